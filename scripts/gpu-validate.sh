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
#   anchor    side by side with DeepSeek FlashMLA, by the same timing method, on the shared cases
#             files: the FlashMLA anchor (.anchor/anchor/run.sh, needs python3 with PyTorch) and then
#             `flashmla bench --cases` on .anchor/cases/{throughput,latency}.json, back to back;
#             writes h200-flashmla.json (the anchor's JSON lines) and h200.json (ours, both suites in
#             one list), and compare.py's table with the geomean speed-up per suite and over both.
#             .anchor/ is made on the developer machine by scripts/prepare-anchor.sh and carried
#             along; without it only our bench runs, on the built-in suites.
#   bench     (not in the default list) `flashmla bench` on the built-in throughput and latency
#             suites, into suites.json
#   append    (not in the default list) `flashmla bench-append`: KV cache appends of n in {1, 16,
#             128, 1024, 16384, 131072} bf16 tokens (latent form, then split form), graph-replay
#             timing and GB/s as a share of the same run's copy bandwidth, into append-latent.json
#             and append-split.json (log: bench-append.log)
#   launch    (not in the default list) the latency cases side by side with FlashMLA, ours three
#             ways: as shipped (merge in the decode kernel, programmatic dependent launch), with
#             the separate combine kernel (FLASHMLA_SPLIT_MERGE=combine), and without PDL
#             (FLASHMLA_DEPENDENT_LAUNCH=0), and with the wgmma path taking every call
#             (FLASHMLA_KERNEL_PATHS=wgmma,mma.sync); writes launch-flashmla.json,
#             launch-{fused,combine,nopdl,wgmma}.json and launch-compare.txt
#   micro     (not in the default list; needs no bundle, only python3 with PyTorch) the development
#             harness of the Hopper path, bench/micro/run.sh check latency timeline: correctness of
#             the committed PTX against a float64 reference, the latency cases every way (mma.sync
#             and wgmma, combine kernel and in-kernel merge) and the timeline probes' stamps; carry
#             bench/micro/build (scripts/build-micro.sh) for the probes and for SM90_VARIANTS
#
# Logs and results go to ${OUT:-gpu-logs}/; a summary is printed last. A device call brings back
# at most 8 files from $OUT, so run the anchor step in a call of its own:
#   scripts/gpu-validate.sh anchor
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-$root/gpu-logs}
mkdir -p "$out"
run=$root/bundle/run.sh

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(info sass tests sanitize verify anchor)
# Every step but micro runs the bundle.
for s in "${steps[@]}"; do
  if [ "$s" != micro ] && [ ! -x "$run" ]; then
    echo "error: bundle/run.sh not found; run scripts/bundle.sh first" >&2
    exit 2
  fi
done
summary=()
note() { summary+=("$(printf '%-10s %s' "$1" "$2")"); }
# Printed after the summary when a step sets it (the anchor step's comparison table).
after_summary=

# The quick GPU test subset used under the sanitizers.
# (SANITIZE_CLASSES overrides it: space-separated class patterns; SANITIZE_TOOLS picks the tools,
# default memcheck racecheck synccheck; SANITIZE_TIMEOUT each tool's limit in seconds, default 300.)
if [ -n "${SANITIZE_CLASSES:-}" ]; then
  gpu_filter=()
  for c in $SANITIZE_CLASSES; do gpu_filter+=(--filter-class "$c"); done
else
  gpu_filter=(--filter-class 'FlashMla.Tests.Cuda.*' --filter-class 'FlashMla.Tests.Mla.Cuda.Gpu*' --filter-class 'FlashMla.Tests.Kernels.*Gpu*')
fi

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
  for tool in ${SANITIZE_TOOLS:-memcheck racecheck synccheck}; do
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
  "$run" flashmla bench --suite throughput latency --output "$out/suites.json" >"$out/bench-suites.log" 2>&1
  note bench "throughput + latency rc=$? $(report "$out/suites.json")"
}

step_append() {
  local form rc
  for form in latent split; do
    "$run" flashmla bench-append --form "$form" --output "$out/append-$form.json" >>"$out/bench-append.log" 2>&1
    rc=$?
    note append "$form rc=$rc $(append_summary "$out/append-$form.json")"
  done
}

# "n=1: 2.1us 1% ..." per case of a bench-append result file: graph_us and the share of copy bandwidth.
append_summary() {
  command -v python3 >/dev/null 2>&1 || { echo "(no python3 to read $(basename "$1"))"; return; }
  python3 - "$1" <<'PY' 2>&1 | tail -1
import json, sys
try:
    records = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"no result: {e}"); sys.exit()
cases = [r for r in records if r.get("kind") == "append"]
print(" ".join(f"n={r['n']}: {r['graph_us']:.2f}us {r['gbps_pct_of_copy'] or 0:.0f}%" for r in cases) or "no case")
PY
}

# One line about a result file (cases timed, SM clock, copy GB/s), through scripts/bench-report.py.
report() {
  if command -v python3 >/dev/null 2>&1; then
    python3 "$root/scripts/bench-report.py" run "$1" 2>&1 | tail -1
  else
    echo "(no python3 to read $(basename "$1"))"
  fi
}

step_anchor() {
  local anchor=$root/.anchor
  local ours=$out/h200.json theirs=$out/h200-flashmla.json
  local cases=("$anchor/cases/throughput.json" "$anchor/cases/latency.json")
  local f missing=()
  for f in "$anchor/anchor/run.sh" "${cases[@]}" "$anchor/compare.py"; do
    [ -f "$f" ] || missing+=("${f#"$root"/}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    note anchor "FAILED: not here: ${missing[*]}; run scripts/prepare-anchor.sh before the device call and carry .anchor"
    "$run" flashmla bench --suite throughput latency --output "$ours" >"$out/bench.log" 2>&1
    note ours "rc=$? built-in suites, not the cases files: $(report "$ours")"
    return
  fi

  # Back to back on the same GPU: FlashMLA first, then ours; ours runs whatever the anchor did.
  local anchor_rc ours_rc
  echo "   FlashMLA anchor on the cases files" >&2
  bash "$anchor/anchor/run.sh" "${cases[@]}" >"$theirs" 2>"$out/flashmla-anchor.log"
  anchor_rc=$?
  echo "   flashmla bench on the cases files" >&2
  "$run" flashmla bench --cases "${cases[@]}" --output "$ours" >"$out/bench.log" 2>&1
  ours_rc=$?
  if [ $anchor_rc -eq 0 ]; then
    note anchor "rc=0 $(report "$theirs")"
  else
    note anchor "FAILED rc=$anchor_rc: $(grep -v '^[[:space:]]*$' "$out/flashmla-anchor.log" | tail -1) (partial: $(report "$theirs"); see flashmla-anchor.log)"
  fi
  if [ $ours_rc -eq 0 ]; then
    note ours "rc=0 $(report "$ours")"
  else
    note ours "FAILED rc=$ours_rc: $(grep -m1 -E '^ *error:' "$out/bench.log") ($(report "$ours"); see bench.log)"
  fi

  if ! command -v python3 >/dev/null 2>&1; then
    note compare "skipped: no python3"
    return
  fi
  local table=$out/compare.txt tmp suite line
  if ! python3 "$anchor/compare.py" "$ours" "$theirs" >"$table" 2>&1; then
    note compare "FAILED: $(tail -1 "$table")"
    return
  fi
  tmp=$(mktemp -d)
  for suite in throughput latency; do
    line=
    python3 "$root/scripts/bench-report.py" filter "$anchor/cases/$suite.json" "$ours" "$tmp/ours-$suite.jsonl" &&
      python3 "$root/scripts/bench-report.py" filter "$anchor/cases/$suite.json" "$theirs" "$tmp/flashmla-$suite.jsonl" &&
      line=$(python3 "$anchor/compare.py" "$tmp/ours-$suite.jsonl" "$tmp/flashmla-$suite.jsonl" 2>&1 | grep -E 'geomean|no case|no match' | tr '\n' ' ')
    note compare "$suite: ${line:-no result}"
    echo "$suite: ${line:-no result}" >>"$table"
  done
  rm -rf "$tmp"
  note compare "both: $(grep -m1 'geomean' "$table")"
  after_summary=$table
}

step_micro() {
  if [ ! -d "$root/bench/micro/build" ]; then
    note micro "FAILED: no bench/micro/build (scripts/build-micro.sh, and carry it)"
    return
  fi
  OUT=$out bash "$root/bench/micro/run.sh" check latency timeline >"$out/micro.log" 2>&1
  note micro "rc=$? $(grep -E '^check rc|^latency rc|^timeline rc' "$out/micro.log" | tr '\n' ' ')"
}

step_launch() {
  local anchor=$root/.anchor cases=$root/.anchor/cases/latency.json table=$out/launch-compare.txt
  if [ ! -f "$anchor/anchor/run.sh" ]; then
    note launch "FAILED: no .anchor (scripts/prepare-anchor.sh)"
    return
  fi
  bash "$anchor/anchor/run.sh" "$cases" >"$out/launch-flashmla.json" 2>"$out/launch-anchor.log"
  note launch "anchor rc=$? $(report "$out/launch-flashmla.json")"
  "$run" flashmla bench --cases "$cases" --output "$out/launch-fused.json" >"$out/launch-bench.log" 2>&1
  note launch "fused rc=$?"
  FLASHMLA_SPLIT_MERGE=combine "$run" flashmla bench --cases "$cases" --output "$out/launch-combine.json" >>"$out/launch-bench.log" 2>&1
  note launch "combine rc=$?"
  FLASHMLA_DEPENDENT_LAUNCH=0 "$run" flashmla bench --cases "$cases" --output "$out/launch-nopdl.json" >>"$out/launch-bench.log" 2>&1
  note launch "nopdl rc=$?"
  FLASHMLA_KERNEL_PATHS=wgmma,mma.sync "$run" flashmla bench --cases "$cases" --output "$out/launch-wgmma.json" >>"$out/launch-bench.log" 2>&1
  note launch "wgmma rc=$?"
  : >"$table"
  local v
  for v in fused combine nopdl wgmma; do
    echo "== $v" >>"$table"
    python3 "$anchor/compare.py" "$out/launch-$v.json" "$out/launch-flashmla.json" >>"$table" 2>&1
  done
  after_summary=$table
}

for s in "${steps[@]}"; do
  case "$s" in
    info|sass|tests|sanitize|verify|anchor|bench|append|launch|micro) echo "== $s" >&2; "step_$s" ;;
    *) echo "error: unknown step '$s'" >&2; exit 2 ;;
  esac
done

echo
echo "== summary (logs in $out)"
printf '%s\n' "${summary[@]}"
if [ -n "$after_summary" ] && [ -f "$after_summary" ]; then
  echo
  echo "== FlashMLA (anchor) against ours, graph_us per decode call; speed-up = anchor / ours ($(basename "$after_summary"))"
  cat "$after_summary"
fi
