#!/usr/bin/env bash
# Kernel durations and a few Nsight Compute sections of one decode per case, on the GPU machine, from
# the repository root with bundle/ (scripts/bundle.sh). Each case runs `flashmla decode` once under
# ncu (clock control off) for the default decoder and for one pinned to mma.sync.
#   scripts/profile-kernels.sh            logs to ${OUT:-gpu-logs}/ncu-*.log, a table last
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-$root/gpu-logs}
mkdir -p "$out"
run=$root/bundle/run.sh
cases=(
  "small --batch 1 --seqlen 1024 --heads 16"
  "small128 --batch 1 --seqlen 1024 --heads 128"
  "math --batch 128 --seqlen 4096 --heads 128"
  "memory --batch 128 --seqlen 4096 --heads 16"
)
for c in "${cases[@]}"; do
  read -r name args <<<"$c"
  for paths in "" "mma.sync"; do
    tag=$name-${paths:-default}
    # shellcheck disable=SC2086
    FLASHMLA_KERNEL_PATHS=$paths timeout 120 ncu --clock-control none --target-processes all -k regex:mla_decode \
      --metrics gpu__time_duration.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed \
      "$run" flashmla decode --backend cuda $args >"$out/ncu-$tag.log" 2>&1
    echo "== $tag (rc $?)"
    grep -E "mla_decode_|gpu__time_duration|hmma_cycles|sm__throughput|dram__throughput" "$out/ncu-$tag.log" | sed -E 's/ +/ /g' | cut -c1-120
  done
done
