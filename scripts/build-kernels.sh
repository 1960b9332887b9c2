#!/usr/bin/env bash
# Compiles kernels/*.cu to PTX with clang-19 in CUDA device-only mode (no CUDA toolkit needed)
# and writes src/FlashMla/Kernels/<target>/<kernel>.ptx, which the library embeds.
#
#   scripts/build-kernels.sh          regenerate the committed PTX
#   scripts/build-kernels.sh --check  exit 1 when the committed PTX differs from a fresh compile
#
# CLANG overrides the compiler (default: clang-19).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

clang=${CLANG:-clang-19}
targets=(sm_80 sm_90a)
out_root=src/FlashMla/Kernels
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if ! command -v "$clang" >/dev/null 2>&1; then
  echo "error: $clang not found (install clang-19, or set CLANG)" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

shopt -s nullglob
sources=(kernels/*.cu)
if [ ${#sources[@]} -eq 0 ]; then
  echo "error: no kernels/*.cu" >&2
  exit 2
fi

for target in "${targets[@]}"; do
  mkdir -p "$work/$target"
  for src in "${sources[@]}"; do
    name=$(basename "$src" .cu)
    "$clang" -x cuda --cuda-device-only -nocudainc -nocudalib \
      --cuda-gpu-arch="$target" -std=c++17 -O3 -ffp-contract=fast \
      -Wall -Wextra -Werror -Wno-unknown-cuda-version \
      -I kernels/include -S -o "$work/$target/$name.ptx" "$src"
  done
done

if [ "$check" -eq 1 ]; then
  if diff -r "$work" "$out_root" >"$work.diff" 2>&1; then
    echo "PTX is up to date (${#sources[@]} kernels × ${#targets[@]} targets)"
    rm -f "$work.diff"
    exit 0
  fi
  echo "error: committed PTX in $out_root differs from a fresh compile; run scripts/build-kernels.sh" >&2
  head -40 "$work.diff" >&2
  rm -f "$work.diff"
  exit 1
fi

rm -rf "$out_root"
mkdir -p "$out_root"
cp -r "$work"/. "$out_root"/
echo "wrote $(find "$out_root" -name '*.ptx' | wc -l) PTX files to $out_root"
