#!/usr/bin/env bash
# Builds and runs every tests/cpp/test_*.cpp: host programs that check the __host__ __device__
# index math of the kernels in cuda/ (the very functions the kernels call), with g++ and the CUDA
# qualifiers defined away. Each program exits non-zero on a failed check.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${TMPDIR:-/tmp}/unified-tensor-cpp-tests
mkdir -p "$out"
cxx=${CXX:-g++}
passed=0; failed=0
for src in "$here"/test_*.cpp; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .cpp)
  if ! "$cxx" -std=c++17 -O1 -Wall -Wextra -Werror -I"$top/cuda" -I"$here" "$src" -o "$out/$name"; then
    echo "FAILED (compile): $name"; failed=$((failed + 1)); continue
  fi
  if "$out/$name"; then passed=$((passed + 1)); else echo "FAILED: $name"; failed=$((failed + 1)); fi
done
echo "cpp: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
