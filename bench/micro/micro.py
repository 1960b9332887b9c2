#!/usr/bin/env python3
"""Microbenchmarks of the sm_90a primitives (bench/micro/micro_sm90.cu) on an H100/H200.

Usage: micro.py [PTX_DIR]  (default bench/micro/build; run scripts/build-micro.sh first).
Prints one table: the wgmma rate of the decode kernel's two shapes from shared memory, with 1–3
warpgroups issuing and with or without a concurrent TMA stream, and the rate at which TMA streams
a paged cache (64×64 boxes from random 64-token pages) for several ring depths."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cudrv  # noqa: E402

ptx_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "build")
mod = cudrv.Module(os.path.join(ptx_dir, "micro_sm90.ptx"))
sms = torch.cuda.get_device_properties(0).multi_processor_count
ev = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731


def timed(fn, reps=5):
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = ev(), ev()
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e-3)
    return sorted(ts)[len(ts) // 2]


def wgmma_rates():
    rows = []
    stream_rows = 1 << 20  # 64 columns × 1 Mi rows of bf16 = 128 MiB, streamed round-robin
    src = torch.randn(stream_rows, 64, device="cuda").bfloat16()
    smap = cudrv.to_device(cudrv.tensor_map(cudrv.TMAP_BF16, src.data_ptr(), [64, stream_rows, 1, 1],
                                            [128, 128 * stream_rows, 128 * stream_rows], [64, 64, 1, 1]))
    smem = 64 * 1024 + 8 * 8192 + 64 + 1024
    for name, n in (("n64 (QK)", 64), ("n128 (PV)", 128), ("n256 (PV)", 256)):
        k = mod.kernel(f"micro_wgmma_n{n}")
        k.set_smem(smem)
        iters = 4000 * 64 // n
        flops_per_iter = 4 * 2 * 64 * n * 16
        for wgs in ((1, 2, 3) if n < 256 else (1, 2)):
            for tma in (0, 1):
                out = torch.empty(sms * (128 * wgs + 32), device="cuda")
                params = cudrv.pack("QQiiii", out.data_ptr(), smap.data_ptr(), iters, tma, stream_rows, 0)
                t = timed(lambda: k.launch((sms,), (128 * wgs + 32,), smem, params))
                tflops = sms * wgs * iters * flops_per_iter / t / 1e12
                rows.append((f"wgmma {name}", f"{wgs} WG{' + TMA' if tma else ''}", f"{tflops:7.1f} TFLOP/s",
                             f"{t * 1e6:8.1f} us"))
    return rows


def tma_paged():
    rows = []
    page, d, blocks_per_cta = 64, 576, 256
    k = mod.kernel("micro_tma_paged")
    for share in (1, 2):
        groups = (sms + share - 1) // share
        nblk = groups * blocks_per_cta
        cache = torch.randn(nblk, page, 1, d, device="cuda").bfloat16()  # ~4.8 GB at 132 SMs
        tmap = cudrv.to_device(cudrv.tensor_map(cudrv.TMAP_BF16, cache.data_ptr(), [d, page, 1, nblk],
                                                [d * 2, d * 2, page * d * 2], [64, 64, 1, 1]))
        table = torch.randperm(nblk, device="cuda", dtype=torch.int32)
        out = torch.empty(sms, dtype=torch.int32, device="cuda")
        for slots in (4, 9, 12, 18, 24):
            smem = slots * 8192 + 16 * slots + 1024
            k.set_smem(smem)
            params = cudrv.pack("QQQiiii", tmap.data_ptr(), table.data_ptr(), out.data_ptr(), blocks_per_cta, slots,
                                share, 0)
            t = timed(lambda: k.launch((sms,), (64,), smem, params))
            moved = sms * blocks_per_cta * page * d * 2
            unique = groups * blocks_per_cta * page * d * 2
            rows.append(("TMA paged", f"{slots} slots, {share} CTA/page", f"{moved / t / 1e9:7.0f} GB/s to smem",
                         f"{unique / t / 1e9:7.0f} GB/s from HBM"))
        del cache
        torch.cuda.empty_cache()
    return rows


def copy_gbps():
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    t = timed(lambda: y.copy_(x))
    return 2 * x.numel() / t / 1e9


if __name__ == "__main__":
    print(mod.log()[-3000:], file=sys.stderr)
    res = wgmma_rates() + tma_paged()
    print(f"copy 1 GiB: {copy_gbps():.0f} GB/s (read + write)")
    for r in res:
        print(f"{r[0]:12s} {r[1]:24s} {r[2]:>22s} {r[3]:>22s}")
