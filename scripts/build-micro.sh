#!/usr/bin/env bash
# Compiles the microbenchmarks in bench/micro/*.cu and the timing probes of the Hopper decode kernel
# to PTX (sm_90a) in bench/micro/build/ (git-ignored), with the same clang-19 flags and kernel
# headers as scripts/build-kernels.sh. bench/micro/run.sh uses them on the GPU machine; carry
# bench/micro/build there. BASE=REV also builds revision REV's decode kernels as base_sm90,
# base_splitkv and their timeline probes (base_probe_sm90_timeline, base_probe_splitkv_timeline),
# to time beside the working tree's (SM90_VARIANTS, TIMELINE_PROBES).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
clang=${CLANG:-clang-19}
mkdir -p bench/micro/build
# The decode kernels under development are built here too, so that bench/micro/check_sm90.py can
# load them before they are embedded.
build() {  # build SOURCE NAME [clang flags…]  (SOURCE and kernels/include under $tree, default .)
  local src=$1 name=$2
  shift 2
  "$clang" -x cuda --cuda-device-only -nocudainc -nocudalib --cuda-gpu-arch=sm_90a -std=c++17 -O3 \
    -ffp-contract=fast -Wall -Wextra -Werror -Wno-unknown-cuda-version -I "${tree:-.}/kernels/include" "$@" \
    -S -o "bench/micro/build/$name.ptx" "${tree:-.}/$src"
}
for src in bench/micro/*.cu; do
  build "$src" "$(basename "$src" .cu)"
done
# Timing probes of the decode kernel (not correct results): K loads removed, tensor work removed.
build kernels/decode_sm90.cu probe_sm90_noload -DFMLA_SM90_PROBE_NO_LOADS
build kernels/decode_sm90.cu probe_sm90_nomath -DFMLA_SM90_PROBE_NO_MATH
# Timeline probes (correct results, plus %globaltimer stamps per CTA: kernels/include/probe_timeline.cuh).
build kernels/decode_sm90.cu probe_sm90_timeline -DFMLA_PROBE_TIMELINE
build kernels/decode_splitkv.cu probe_splitkv_timeline -DFMLA_PROBE_TIMELINE
if [ -n "${BASE:-}" ]; then
  tree=$(mktemp -d)
  git archive "$BASE" kernels | tar -x -C "$tree"
  build kernels/decode_sm90.cu base_sm90
  build kernels/decode_splitkv.cu base_splitkv
  build kernels/decode_sm90.cu base_probe_sm90_timeline -DFMLA_PROBE_TIMELINE
  build kernels/decode_splitkv.cu base_probe_splitkv_timeline -DFMLA_PROBE_TIMELINE
  rm -rf "$tree"
  unset tree
fi
echo "wrote $(ls bench/micro/build/*.ptx | wc -l) PTX files to bench/micro/build"
