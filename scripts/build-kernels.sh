#!/usr/bin/env bash
# Compiles kernels/*.cu to PTX with clang-19 in CUDA device-only mode (no CUDA toolkit needed)
# and writes src/FlashMla/Kernels/<target>/<module>.ptx, which the library embeds.
#
# Each module declares the targets it is built for on its first line, which is the only place
# they are written:
#   // targets: sm_80 sm_90a
# A module may name one target only (an sm_90a-only wgmma kernel, say); the library then reports
# its kernel path as unsupported on devices that load the other target.
#
#   scripts/build-kernels.sh          regenerate the committed PTX
#   scripts/build-kernels.sh --check  exit 1 when the committed PTX differs from a fresh compile:
#                                     any module/target pair changed or missing, or a PTX file
#                                     that no module/target pair produces any more
#
# CLANG overrides the compiler (default: clang-19).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

clang=${CLANG:-clang-19}
known_targets=(sm_80 sm_90a)
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

# The targets a module declares on its first line: "// targets: sm_80 sm_90a".
module_targets() {
  local src=$1 line
  IFS= read -r line <"$src" || true
  case "$line" in
    "// targets:"*) ;;
    *) echo "error: $src: the first line must declare its targets, e.g. '// targets: sm_80 sm_90a'" >&2; return 1 ;;
  esac
  local list=${line#"// targets:"} t k ok
  [ -n "${list// /}" ] || { echo "error: $src: no targets on its first line" >&2; return 1; }
  for t in $list; do
    ok=0
    for k in "${known_targets[@]}"; do [ "$t" = "$k" ] && ok=1; done
    [ "$ok" -eq 1 ] || { echo "error: $src: unknown target '$t' (known: ${known_targets[*]})" >&2; return 1; }
  done
  echo "$list"
}

pairs=0
for src in "${sources[@]}"; do
  name=$(basename "$src" .cu)
  targets=$(module_targets "$src") || exit 2
  for target in $targets; do
    mkdir -p "$work/$target"
    "$clang" -x cuda --cuda-device-only -nocudainc -nocudalib \
      --cuda-gpu-arch="$target" -std=c++17 -O3 -ffp-contract=fast \
      -Wall -Wextra -Werror -Wno-unknown-cuda-version \
      -I kernels/include -S -o "$work/$target/$name.ptx" "$src"
    pairs=$((pairs + 1))
  done
done

# src/FlashMla/Kernels also holds the C# of the Kernels layer: only the target folders are PTX.
if [ "$check" -eq 1 ]; then
  # diff -r reports changed files and files only on one side: a module/target pair whose PTX
  # is not committed, and committed PTX that no pair produces any more.
  : >"$work.diff"
  for target in "${known_targets[@]}"; do
    [ -d "$work/$target" ] || [ -d "$out_root/$target" ] || continue
    mkdir -p "$work/$target"
    if [ -d "$out_root/$target" ]; then
      diff -r "$work/$target" "$out_root/$target" >>"$work.diff" 2>&1 || true
    else
      echo "Only in $work: $target" >>"$work.diff"
    fi
  done
  while IFS= read -r ptx; do
    dir=$(basename "$(dirname "$ptx")")
    known=0
    for target in "${known_targets[@]}"; do [ "$dir" = "$target" ] && known=1; done
    [ "$known" -eq 1 ] || echo "Only in $(dirname "$ptx"): $(basename "$ptx")" >>"$work.diff"
  done < <(find "$out_root" -name '*.ptx')
  if [ ! -s "$work.diff" ]; then
    echo "PTX is up to date ($pairs module/target pairs from ${#sources[@]} modules)"
    rm -f "$work.diff"
    exit 0
  fi
  echo "error: committed PTX in $out_root differs from a fresh compile; run scripts/build-kernels.sh" >&2
  sed -e "s|^Only in $work/\\{0,1\\}\\([^:]*\\): \\(.*\\)\$|not committed (a module/target pair without PTX): $out_root/\\1/\\2|" \
      -e "s|^Only in $out_root/\\{0,1\\}\\([^:]*\\): \\(.*\\)\$|stale (no module/target pair produces it): $out_root/\\1/\\2|" \
      -e "s|^diff -r $work/\\([^ ]*\\) .*|changed: $out_root/\\1|" \
    "$work.diff" | head -40 >&2
  rm -f "$work.diff"
  exit 1
fi

for target in "${known_targets[@]}"; do
  rm -rf "${out_root:?}/$target"
  if [ -d "$work/$target" ]; then
    mkdir -p "$out_root/$target"
    cp "$work/$target"/*.ptx "$out_root/$target"/
  fi
done
echo "wrote $(find "$out_root" -name '*.ptx' | wc -l) PTX files to $out_root"
