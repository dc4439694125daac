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
# UNIFIED_TENSOR_VENV_ROOT overrides where the venvs live (UT_VENV_ROOT: its old name, still read).
if [ -z "${UNIFIED_TENSOR_VENV_ROOT:-}" ] && [ -n "${UT_VENV_ROOT:-}" ]; then
  echo "venv.sh: UT_VENV_ROOT is deprecated; set UNIFIED_TENSOR_VENV_ROOT instead" >&2
  UNIFIED_TENSOR_VENV_ROOT=$UT_VENV_ROOT
fi
root=${UNIFIED_TENSOR_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/unified-tensor/venvs}
hash=$( (cat "$req"; python3 --version 2>&1) | sha256sum | cut -c1-16)
venv="$root/$name-$hash"
mkdir -p "$root"
exec 9>"$root/$name.lock"
flock 9
# Everything this script says goes to stderr: its stdout is the venv path (the Makefile captures it).
say() { echo "venv.sh: $*" >&2; }
if [ ! -f "$venv/.complete" ]; then
  case $name in
    modern) took="about 3 minutes, ~2 GB" ;;
    dgl) took="about 5-10 minutes: ~6 GB, torch 2.2.1 is a CUDA build with NVIDIA's libraries" ;;
    *) took="a few minutes" ;;
  esac
  say "building the '$name' environment from requirements/$name.txt into $venv"
  say "(first run only, or after the pin file changed; $took on a fast link; reused afterwards)"
  start=$SECONDS
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  # (the grep drops this machine's pip warnings about absent local index folders)
  "$venv/bin/python" -m pip install -q -r "$req" 2> >(grep -v "is ignored: it is neither" >&2)
  "$venv/bin/python" -c "import torch, numpy, numba" >&2   # fail here, not later, on a broken install
  touch "$venv/.complete"
  say "the '$name' environment is ready ($((SECONDS - start)) s)"
fi
echo "$venv"
