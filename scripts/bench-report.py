#!/usr/bin/env python3
"""Helpers of the anchor step of scripts/gpu-validate.sh, over bench results in either form (a JSON list,
as `flashmla bench --output` writes, or JSON lines, as the FlashMLA anchor prints).

  bench-report.py filter CASES.json IN OUT   writes to OUT, as JSON lines, the records of IN whose name
                                             is a case of CASES.json (to compare one suite at a time)
  bench-report.py run IN                     one line about a run: cases timed, SM clock at the start
                                             and at the end, copy GB/s, driver"""
import json
import sys


def records(path):
    try:
        text = open(path).read().strip()
    except OSError as e:
        sys.exit(f"{path}: {e.strerror}")
    if not text:
        return []
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        out = []
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line cut short by a failed run
        return out


def filter_cmd(cases_path, in_path, out_path):
    names = {c["name"] for c in json.load(open(cases_path))}
    kept = [r for r in records(in_path) if isinstance(r, dict) and r.get("name") in names]
    with open(out_path, "w") as f:
        for r in kept:
            f.write(json.dumps(r) + "\n")


def run_cmd(in_path):
    rs = [r for r in records(in_path) if isinstance(r, dict)]
    timed = [r for r in rs if r.get("name") and r.get("graph_us")]
    # Ours: a run record (kind "run"); the anchor: a "ceilings" line first and an "end" line last.
    head = next((r for r in rs if r.get("kind") in ("run", "ceilings")), {})
    end = next((r for r in reversed(rs) if r.get("kind") == "end"), {})
    start_clock = head.get("sm_clock_mhz_start", head.get("sm_clock_mhz"))
    end_clock = head.get("sm_clock_mhz_end", end.get("sm_clock_mhz"))
    parts = [f"{len(timed)} cases timed", f"SM clock {start_clock} -> {end_clock} MHz", f"copy {head.get('copy_gbps')} GB/s"]
    if "driver_version" in head:
        parts.append(f"driver {head.get('driver_version')}")
    if "bf16_gemm_tflops" in head:
        parts.append(f"bf16 GEMM {head.get('bf16_gemm_tflops')} TFLOPS, check rel err {head.get('check_rel_err')}")
    print(", ".join(parts))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "filter":
        filter_cmd(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "run":
        run_cmd(sys.argv[2])
    else:
        sys.exit(__doc__)
