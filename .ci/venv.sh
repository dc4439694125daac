#!/usr/bin/env bash
# Usage: .ci/venv.sh NAME   (NAME = modern | dgl)
# Builds (or reuses) the virtual environment for requirements/NAME.txt and prints its path.
# The venv lives outside the checkout, keyed by the hash of the pin file, so a warm run is fast
# and a changed pin file gets a fresh environment. The project itself is not installed into it:
# everything runs from the checkout with PYTHONPATH=. (as on the GPU machine).
set -euo pipefail
name=${1:?usage: venv.sh modern|dgl}
top=$(cd "$(dirname "$0")/.." && pwd)
req="$top/requirements/$name.txt"
[ -f "$req" ] || { echo "no pin file $req" >&2; exit 2; }
root=${UT_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/unified-tensor/venvs}
hash=$( (cat "$req"; python3 --version 2>&1) | sha256sum | cut -c1-16)
venv="$root/$name-$hash"
mkdir -p "$root"
exec 9>"$root/$name.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  # (the grep drops this machine's pip warnings about absent local index folders)
  "$venv/bin/python" -m pip install -q -r "$req" 2> >(grep -v "is ignored: it is neither" >&2)
  "$venv/bin/python" -c "import torch, numpy, numba" >&2   # fail here, not later, on a broken install
  touch "$venv/.complete"
fi
echo "$venv"
