#!/usr/bin/env bash
# On the GPU machine, from the repository root, with bench/micro/build carried (scripts/build-micro.sh):
#   bench/micro/run.sh [sass] [check] [timing] [latency] [timeline] [micro]
#                                                          (default: sass check timing micro)
# sass:   ptxas -v and cuobjdump of every PTX in bench/micro/build and of the library's
#         decode_sm90.ptx (registers, spills, wgmma serialization notes C75xx, HGMMA and
#         WARPGROUP.DEPBAR counts).
# check:  bench/micro/check_sm90.py correctness cases; timing: its timing table (with the probes of
#         bench/micro/build beside the kernel: SM90_VARIANTS=probe_sm90_noload,probe_sm90_nomath);
# latency:  check_sm90.py --latency: the latency suite's fixed-length cases as graphs of calls over
#           rotating cache copies, mma.sync and wgmma, each with the combine kernel and merging in
#           the kernel (+m), and the builds named in SM90_VARIANTS beside them;
# timeline: check_sm90.py --timeline: the stamps of the FMLA_PROBE_TIMELINE probe builds (those
#           named in TIMELINE_PROBES, default probe_sm90_timeline,probe_splitkv_timeline; with
#           BASE=REV scripts/build-micro.sh, add base_probe_sm90_timeline and the like to time REV's);
# micro:  micro.py.
# Logs go to ${OUT:-bench/micro/logs}.
set -uo pipefail
out=${OUT:-bench/micro/logs}
mkdir -p "$out"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(sass check timing micro)
export PYTHONUNBUFFERED=1
for s in "${steps[@]}"; do
  case $s in
  sass)
    for ptx in bench/micro/build/*.ptx src/FlashMla/Kernels/sm_90a/decode_sm90.ptx; do
      n=$(basename "$ptx" .ptx)
      ptxas -arch=sm_90a -O3 -v -o "/tmp/$n.cubin" "$ptx" >"$out/ptxas-$n.log" 2>&1
      rc=$?
      cuobjdump -sass "/tmp/$n.cubin" >"$out/$n.sass" 2>/dev/null
      spill=$(grep -oE '[0-9]+ bytes spill stores' "$out/ptxas-$n.log" | awk '{s+=$1} END {print s+0}')
      notes=$(grep -c 'C75' "$out/ptxas-$n.log")
      regs=$(grep -oE 'Used [0-9]+ registers' "$out/ptxas-$n.log" | head -1)
      echo "$n: ptxas rc=$rc, $regs, spill stores $spill, C75xx notes $notes, HGMMA $(grep -c HGMMA "$out/$n.sass"), DEPBAR $(grep -c 'WARPGROUP.DEPBAR' "$out/$n.sass"), USETMAXREG $(grep -c USETMAXREG "$out/$n.sass")"
      grep -oE '\(C75[0-9]+\)[^:]*: [a-z .A-Z]*' "$out/ptxas-$n.log" | sort | uniq -c | head -4
    done
    ;;
  check) timeout 90 python3 bench/micro/check_sm90.py --no-timing >"$out/check.log" 2>&1; echo "check rc=$?"; grep -E "PASS|FAIL|correctness|registers" "$out/check.log" | cut -c1-150 ;;
  timing) SM90_VARIANTS=${SM90_VARIANTS:-} timeout 200 python3 bench/micro/check_sm90.py --timing-only >"$out/timing.log" 2>&1; echo "timing rc=$?"; grep -A20 "^case" "$out/timing.log" ;;
  latency) SM90_VARIANTS=${SM90_VARIANTS:-} timeout 300 python3 bench/micro/check_sm90.py --latency >"$out/latency.log" 2>&1; echo "latency rc=$?"; grep -A30 "^case" "$out/latency.log" ;;
  timeline) timeout 200 python3 bench/micro/check_sm90.py --timeline >"$out/timeline.log" 2>&1; echo "timeline rc=$?"; grep -c "^b" "$out/timeline.log" ;;
  micro) timeout 150 python3 bench/micro/micro.py >"$out/micro.log" 2>&1; echo "micro rc=$?"; grep -E "copy|wgmma|TMA" "$out/micro.log" ;;
  *) echo "unknown step $s" >&2; exit 2 ;;
  esac
done
