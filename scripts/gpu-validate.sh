#!/usr/bin/env bash
# Validates and measures the CUDA backend on a GPU machine, from the repository root, using the
# bundle made by scripts/bundle.sh (no .NET SDK needed there).
#
#   scripts/gpu-validate.sh [step ...]
#
# Steps (default: all, in this order):
#   info      nvidia-smi and `flashmla info`
#   sass      ptxas resource usage (registers, spills, shared memory) of the sm_90a PTX and the
#             tensor-core instructions in its SASS (needs ptxas and cuobjdump from a CUDA toolkit)
#   tests     the whole test suite (GPU tests run for real)
#   sanitize  compute-sanitizer memcheck, racecheck and synccheck over the quick GPU tests
#   verify    `flashmla verify --backend cuda`
#   bench     `flashmla bench` throughput and latency suites, JSON into the log folder
#
# Logs and results go to ${OUT:-gpu-logs}/; a summary table is printed last.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-$root/gpu-logs}
mkdir -p "$out"
run=$root/bundle/run.sh
if [ ! -x "$run" ]; then
  echo "error: bundle/run.sh not found; run scripts/bundle.sh first" >&2
  exit 2
fi

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(info sass tests sanitize verify bench)
summary=()
note() { summary+=("$(printf '%-10s %s' "$1" "$2")"); }

# The quick GPU test subset used under the sanitizers.
gpu_filter=(--filter-class 'FlashMla.Tests.Cuda*' --filter-class 'FlashMla.Tests.Gpu*')

step_info() {
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv >"$out/info.log" 2>&1
  "$run" flashmla info >>"$out/info.log" 2>&1
  note info "$(head -2 "$out/info.log" | tail -1)"
}

step_sass() {
  local log=$out/sass.log
  : >"$log"
  if ! command -v ptxas >/dev/null 2>&1; then
    note sass "skipped: no ptxas"
    return
  fi
  local tmp
  tmp=$(mktemp -d)
  for ptx in src/FlashMla/Kernels/sm_90a/*.ptx; do
    local name
    name=$(basename "$ptx" .ptx)
    echo "== $name" >>"$log"
    ptxas -arch=sm_90a -O3 -v -o "$tmp/$name.cubin" "$ptx" >>"$log" 2>&1
    if command -v cuobjdump >/dev/null 2>&1; then
      cuobjdump -sass "$tmp/$name.cubin" >"$tmp/$name.sass" 2>&1
      echo "   HMMA: $(grep -c HMMA "$tmp/$name.sass")  HGMMA: $(grep -c HGMMA "$tmp/$name.sass")  LDL/STL: $(grep -cE 'LDL|STL' "$tmp/$name.sass")" >>"$log"
    fi
  done
  cp "$tmp"/decode_splitkv.sass "$out/decode_splitkv.sass" 2>/dev/null
  rm -rf "$tmp"
  note sass "$(grep -cE 'spill' "$log") spill lines; $(grep -E 'bytes spill' "$log" | grep -vc ' 0 bytes spill stores, 0 bytes spill loads') with spills"
}

step_tests() {
  "$run" tests --no-progress >"$out/tests.log" 2>&1
  local rc=$?
  note tests "rc=$rc $(grep -E 'total:|failed:|succeeded:|skipped:' "$out/tests.log" | tr -s ' ' | tr '\n' ' ')"
}

step_sanitize() {
  if ! command -v compute-sanitizer >/dev/null 2>&1; then
    note sanitize "skipped: no compute-sanitizer"
    return
  fi
  local tool rc
  for tool in memcheck racecheck synccheck; do
    # API errors are expected: some tests provoke them on purpose (bad inputs, bad launches).
    FLASHMLA_GPU_TESTS=quick timeout "${SANITIZE_TIMEOUT:-300}" compute-sanitizer --tool "$tool" --error-exitcode 99 \
      --target-processes all --report-api-errors no \
      "$run" tests --no-progress "${gpu_filter[@]}" >"$out/sanitize-$tool.log" 2>&1
    rc=$?
    note "$tool" "rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|succeeded:|failed:' "$out/sanitize-$tool.log" | tr -s ' ' | tr '\n' ' ')"
  done
}

step_verify() {
  "$run" flashmla verify --backend cuda >"$out/verify.log" 2>&1
  note verify "rc=$? $(tail -1 "$out/verify.log")"
}

step_bench() {
  "$run" flashmla bench --suite throughput --format json --output "$out/throughput.json" >"$out/bench-throughput.log" 2>&1
  note bench "throughput rc=$?"
  "$run" flashmla bench --suite latency --format json --output "$out/latency.json" >"$out/bench-latency.log" 2>&1
  note bench "latency rc=$?"
}

for s in "${steps[@]}"; do
  case "$s" in
    info|sass|tests|sanitize|verify|bench) echo "== $s" >&2; "step_$s" ;;
    *) echo "error: unknown step '$s'" >&2; exit 2 ;;
  esac
done

echo
echo "== summary (logs in $out)"
printf '%s\n' "${summary[@]}"
