#!/usr/bin/env python3
"""Checks and times the sm_90a decode kernel (decode_sm90) against a float64 PyTorch reference and
against the mma.sync kernel (decode_splitkv), with the library's own schedule and combine kernels.
A development check for the GPU machine; the library's test suite is the authority.

Usage: check_sm90.py [--quick] [--no-timing | --timing-only] [--latency] [--timeline]. PTX from
src/FlashMla/Kernels/sm_90a; SM90_PTX=FILE loads another decode_sm90 build, SM90_VARIANTS=a,b times
builds from bench/micro/build (scripts/build-micro.sh) beside it (a name with "splitkv" in it is a
decode_splitkv build). TIMELINE_PROBES=a,b names the probe builds --timeline reads. Prints one line per case and a
timing table. --latency times the small-batch cases as graphs of calls over rotating cache copies
(each path with the combine kernel, and with "+m" merging in the kernel); --timeline reads the
stamps of the probe builds probe_sm90_timeline and probe_splitkv_timeline (FMLA_PROBE_TIMELINE)."""
import math
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import cudrv  # noqa: E402

root = os.path.abspath(os.path.join(here, "..", ".."))
lib = os.path.join(root, "src", "FlashMla", "Kernels", "sm_90a")
sched_mod = cudrv.Module(os.path.join(lib, "decode_schedule.ptx"))
comb_mod = cudrv.Module(os.path.join(lib, "decode_combine.ptx"))
split_mod = cudrv.Module(os.path.join(lib, "decode_splitkv.ptx"))
SM90_VARIANTS = [v for v in os.environ.get("SM90_VARIANTS", "").split(",") if v]
sm90_mod = cudrv.Module(os.environ.get("SM90_PTX", os.path.join(lib, "decode_sm90.ptx")))
variant_mods = {v: cudrv.Module(os.path.join(here, "build", v + ".ptx")) for v in SM90_VARIANTS}
TIMELINE = "--timeline" in sys.argv
TIMELINE_PROBES = [v for v in os.environ.get("TIMELINE_PROBES", "probe_sm90_timeline,probe_splitkv_timeline").split(",") if v]
probe_mods = {}
if TIMELINE:
    probe_mods = {v: cudrv.Module(os.path.join(here, "build", v + ".ptx")) for v in TIMELINE_PROBES}
SMS = torch.cuda.get_device_properties(0).multi_processor_count
INT_MAX = 2**31 - 1
UNUSED = 2147480000
torch.manual_seed(20261201)


def kname(dtype):
    return "bf16" if dtype == torch.bfloat16 else "fp16"


SM90_SMEM = sm90_mod.smem_bytes("mla_decode_sm90_bf16")
K = {}
for dt in ("bf16", "fp16"):
    K["sched"] = sched_mod.kernel("mla_decode_schedule")
    K["comb", dt] = comb_mod.kernel(f"mla_decode_combine_{dt}")
    for m in (16, 32, 64):
        K["split", dt, m] = split_mod.kernel(f"mla_decode_splitkv_{dt}_m{m}")
    for d, suffix in ((576, ""), (512, "_d512")):
        K["sm90", dt, d] = sm90_mod.kernel(f"mla_decode_sm90_{dt}{suffix}")
        K["sm90", dt, d].set_smem(SM90_SMEM)
        for v, m in [(v, m) for v, m in list(variant_mods.items()) + list(probe_mods.items()) if "splitkv" not in v]:
            K[v, dt, d] = m.kernel(f"mla_decode_sm90_{dt}{suffix}")
            K[v, dt, d].set_smem(SM90_SMEM)
K["sched"].set_smem(48 * 1024)


def split_smem(m):
    return split_mod.smem_bytes(f"mla_decode_splitkv_bf16_m{m}")


for m in (16, 32, 64):
    for dt in ("bf16", "fp16"):
        K["split", dt, m].set_smem(split_smem(m))
        for v, mod in list(probe_mods.items()) + list(variant_mods.items()):
            if "splitkv" in v:
                K[v, dt, m] = mod.kernel(f"mla_decode_splitkv_{dt}_m{m}")
                K[v, dt, m].set_smem(split_smem(m))


class Case:
    def __init__(self, b, s_q, h_q, h_kv, seqlens, page=64, causal=False, d=576, dtype=torch.bfloat16, bad=False):
        self.b, self.s_q, self.h_q, self.h_kv, self.page, self.causal, self.d, self.dtype = b, s_q, h_q, h_kv, page, causal, d, dtype
        self.seqlens = list(seqlens)
        self.group = h_q // h_kv
        self.rows = s_q * self.group
        self.parts = max(SMS // h_kv // ((self.rows + 63) // 64), 1)
        pages = [(s + page - 1) // page for s in self.seqlens]
        self.mb = max(1, max(pages))
        self.nblk = sum(pages) + 3
        dev = "cuda"
        self.q = (torch.randn(b, s_q, h_q, d, device=dev) / 10).clamp(-1, 1).to(dtype)
        self.k = (torch.randn(self.nblk, page, h_kv, d, device=dev) / 10).clamp(-1, 1).to(dtype)
        perm = torch.randperm(self.nblk, device=dev, dtype=torch.int32)
        self.bt = torch.full((b, self.mb), UNUSED, dtype=torch.int32, device=dev)
        nxt = 0
        counts = []
        for i, p in enumerate(pages):
            self.bt[i, :p] = perm[nxt:nxt + p]
            nxt += p
            counts += [min(page, self.seqlens[i] - j * page) for j in range(p)]
        used = torch.zeros(self.nblk, page, dtype=torch.bool, device=dev)
        if nxt:
            cnt = torch.tensor(counts, device=dev)
            used[perm[:nxt].long()] = torch.arange(page, device=dev)[None, :] < cnt[:, None]
        self.k[~used] = float("nan")
        if bad:
            i = max(range(b), key=lambda r: self.seqlens[r])
            self.bt[i, 0] = -5
            self.bad_request = i
        self.sl = torch.tensor(self.seqlens, dtype=torch.int32, device=dev)
        self.parts_buf = torch.zeros(self.parts * 8, dtype=torch.int32, device=dev)
        self.num_splits = torch.zeros(b + 1, dtype=torch.int32, device=dev)
        self.error = torch.tensor([0, INT_MAX, INT_MAX, 0], dtype=torch.int32, device=dev)
        slots = b + self.parts
        self.o_acc = torch.empty(slots * h_kv * ((self.rows + 7) // 8 * 8) * 512, device=dev)  # row groups of 8
        self.l_acc = torch.empty(slots * h_kv * self.rows, device=dev)
        self.scale = d ** -0.5
        # MergeCounters [b, h_kv, row tiles] for the in-kernel merge ("+m" paths), row tiles of 16.
        self.merge = torch.zeros(b * h_kv * ((self.rows + 15) // 16) * 2, dtype=torch.int32, device=dev)
        self.kcopies = [self.k]
        self.tmaps = {}

    def rotate(self, min_bytes):
        """Extra copies of the cache, so that calls that cycle through them read from HBM."""
        n = max(1, min(64, -(-min_bytes // (self.k.numel() * self.k.element_size()))))
        self.kcopies = [self.k] + [self.k.clone() for _ in range(n - 1)]

    def schedule(self):
        cap = self.mb * self.page
        K["sched"].launch((1,), (32,), 4 * self.b,
                          cudrv.pack("QQQQiiii", self.sl.data_ptr(), self.parts_buf.data_ptr(), self.num_splits.data_ptr(),
                                     self.error.data_ptr(), self.b, self.parts, cap, 0))

    def outputs(self):
        out = torch.full((self.b, self.s_q, self.h_q, 512), float("nan"), device="cuda").to(self.dtype)
        lse = torch.full((self.b, self.h_q, self.s_q), float("nan"), device="cuda")
        return out, lse

    def base_params(self, out, lse, k=None, merge=0):
        q, k = self.q, (self.k if k is None else k)
        return cudrv.pack(
            "Q" * 12 + "q" * 12 + "i" * 12 + "f" + "i",
            q.data_ptr(), k.data_ptr(), self.bt.data_ptr(), self.sl.data_ptr(), out.data_ptr(), lse.data_ptr(),
            self.o_acc.data_ptr(), self.l_acc.data_ptr(), self.parts_buf.data_ptr(), self.num_splits.data_ptr(),
            self.error.data_ptr(), merge,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2), self.bt.stride(0),
            out.stride(0), out.stride(1), out.stride(2), lse.stride(0), lse.stride(1),
            self.b, self.s_q, self.h_q, self.h_kv, self.group, self.rows, self.d, self.page, self.nblk, self.mb,
            int(self.causal), self.parts, self.scale * math.log2(math.e), 0)

    def combine(self, out, lse):
        K["comb", kname(self.dtype)].launch(
            ((self.rows + 7) // 8, self.h_kv, self.b), (256,), 0,
            cudrv.pack("QQQQQ" + "q" * 5 + "i" * 8, self.o_acc.data_ptr(), self.l_acc.data_ptr(),
                       self.num_splits.data_ptr(), out.data_ptr(), lse.data_ptr(), out.stride(0), out.stride(1),
                       out.stride(2), lse.stride(0), lse.stride(1), self.b, self.s_q, self.h_q, self.h_kv, self.group,
                       self.rows, self.parts, 0))

    def sm90_params(self, out, lse, global_map=False, k=None, merge=0):
        dt = cudrv.TMAP_BF16 if self.dtype == torch.bfloat16 else cudrv.TMAP_F16
        k = self.k if k is None else k
        if k.data_ptr() not in self.tmaps:
            self.tmaps[k.data_ptr()] = cudrv.tensor_map(dt, k.data_ptr(), [self.d, self.page, self.h_kv, self.nblk],
                                                        [k.stride(1) * 2, k.stride(2) * 2, k.stride(0) * 2], [64, 64, 1, 1])
        tmap = self.tmaps[k.data_ptr()]
        gptr = 0
        if global_map:
            self.gmap = cudrv.to_device(tmap)
            gptr = self.gmap.data_ptr()
        return self.base_params(out, lse, k, merge) + cudrv.pack("Q", gptr) + tmap

    def is_sm90(self, path):
        base = path[:-2] if path.endswith("+m") else path
        return base in ("sm90", "sm90g") or ((base in variant_mods or base in probe_mods) and "splitkv" not in base)

    def rows_per_cta(self, path):
        """64 on the wgmma kernel; the mma.sync variant is the smallest of 16, 32, 64 that holds the rows."""
        return 64 if self.is_sm90(path) else 16 if self.rows <= 16 else 32 if self.rows <= 32 else 64

    def ctas(self, path):
        return (self.rows + self.rows_per_cta(path) - 1) // self.rows_per_cta(path) * self.h_kv * self.parts

    def fusable(self, path):
        """Whether the in-kernel merge may run: every CTA of the grid resident at once."""
        return self.ctas(path) <= SMS

    def run(self, path, out, lse, copy=0):
        """Path "sm90", "sm90g" (tensor map in global memory), an sm90 variant, "split" or a split
        probe, then the combine kernel; with a "+m" suffix the kernel merges the splits itself."""
        dt = kname(self.dtype)
        fused = path.endswith("+m")
        base = path[:-2] if fused else path
        merge = self.merge.data_ptr() if fused else 0
        assert not fused or self.fusable(path), "the in-kernel merge needs the whole grid resident"
        k = self.kcopies[copy % len(self.kcopies)]
        if self.is_sm90(path):
            kern = K["sm90" if base == "sm90g" else base, dt, self.d]
            kern.launch(((self.rows + 63) // 64, self.h_kv, self.parts), (512,), SM90_SMEM,
                        self.sm90_params(out, lse, base == "sm90g", k, merge))
        else:
            m = self.rows_per_cta(path)
            K["split" if base == "split" else base, dt, m].launch(((self.rows + m - 1) // m, self.h_kv, self.parts), (256,),
                                                                 split_smem(m), self.base_params(out, lse, k, merge))
        if not fused:
            self.combine(out, lse)

    def reference(self):
        outs, lses = [], []
        for i in range(self.b):
            L = self.seqlens[i]
            p = (L + self.page - 1) // self.page
            kk = self.k[self.bt[i, :p].long()].reshape(-1, self.h_kv, self.d)[:L].double()
            qq = self.q[i].double()  # [s_q, h_q, d]
            kr = kk.repeat_interleave(self.group, dim=1)  # [L, h_q, d]
            s = torch.einsum("shd,lhd->hsl", qq, kr) * self.scale
            if self.causal:
                t = torch.arange(self.s_q, device="cuda")[:, None]
                l = torch.arange(L, device="cuda")[None, :]
                s = s.masked_fill((l >= L - self.s_q + t + 1)[None], float("-inf"))
            lse = torch.logsumexp(s, dim=-1)  # [h, s]
            pr = torch.softmax(s, dim=-1).nan_to_num(0.0)
            o = torch.einsum("hsl,lhd->shd", pr, kr[..., :512])
            lse = torch.where(torch.isfinite(lse), lse, torch.full_like(lse, float("inf")))
            outs.append(o)
            lses.append(lse)
        return torch.stack(outs), torch.stack(lses)


def compare(case, out, lse, ref):
    ro, rl = ref
    o = out.double()
    bad_nan = torch.isnan(o).sum().item() + torch.isnan(lse).sum().item()
    err = (o - ro).abs().max().item()
    cos = 1 - 2 * (o * ro).sum().item() / max((o * o + ro * ro).sum().item(), 1e-30)
    fin = torch.isfinite(rl)
    inf_ok = bool((torch.isinf(lse.double()) == ~fin).all().item())
    lerr = (lse.double()[fin] - rl[fin]).abs().max().item() if fin.any() else 0.0
    ok = bad_nan == 0 and err < 2e-2 and cos < 1e-5 and inf_ok and lerr < 1e-3
    return ok, f"nan={bad_nan} max|dO|={err:.2e} cos={cos:.1e} max|dLSE|={lerr:.1e} inf_ok={inf_ok}"


def check_case(name, case, paths=("sm90", "split", "sm90+m", "split+m")):
    ref = case.reference()
    res = []
    for path in paths:
        if path.endswith("+m") and not case.fusable(path):
            continue
        case.error.copy_(torch.tensor([0, INT_MAX, INT_MAX, 0], dtype=torch.int32))
        case.schedule()
        out, lse = case.outputs()
        case.run(path, out, lse)
        torch.cuda.synchronize()
        ok, msg = compare(case, out, lse, ref)
        res.append((path, ok, msg, out.clone(), case.error.clone()))
    line = f"{'PASS' if res[0][1] else 'FAIL'} {name:36s} {paths[0]}: {res[0][2]} | " + " ".join(
        f"{r[0]} {'ok' if r[1] else 'BAD'}" for r in res[1:])
    return res[0][1], line, res[0][4]


def vary(b, sk, sq):
    g = torch.Generator().manual_seed(b * 7 + sk)
    return [max(int(torch.normal(float(sk), sk / 2, (1,), generator=g).item()), sq) for _ in range(b)]


def correctness(quick):
    cases = [
        ("b2 sq1 h16 [300,77]", Case(2, 1, 16, 1, [300, 77])),
        ("b2 sq2 h16 causal [300,77]", Case(2, 2, 16, 1, [300, 77], causal=True)),
        ("b3 sq1 h64 [64,0,129]", Case(3, 1, 64, 1, [64, 0, 129])),
        ("b4 sq2 h128 var causal", Case(4, 2, 128, 1, vary(4, 1000, 2), causal=True)),
        ("b2 sq1 h128 hkv2 [700,65]", Case(2, 1, 128, 2, [700, 65])),
        ("b6 sq4 h9 hkv3 causal", Case(6, 4, 9, 3, vary(6, 140, 4), causal=True)),
        ("b2 sq1 h16 d512 [333,1]", Case(2, 1, 16, 1, [333, 1], d=512)),
        ("b2 sq1 h32 page128 [500,129]", Case(2, 1, 32, 1, [500, 129], page=128)),
        ("b2 sq2 h64 fp16 causal [260,90]", Case(2, 2, 64, 1, [260, 90], causal=True, dtype=torch.float16)),
        ("b64 sq2 h16 s_k 4096 var", Case(64, 2, 16, 1, vary(64, 4096, 2))),
        ("b128 sq1 h128 s_k 4096 var zeros", Case(128, 1, 128, 1, [0 if i % 9 == 0 else s for i, s in enumerate(vary(128, 4096, 1))])),
        ("b1 sq1 h16 s_k 32768", Case(1, 1, 16, 1, [32768])),
    ]
    if quick:
        cases = cases[:6]
    n_ok = 0
    ok, line, _ = check_case("global tensor map " + cases[0][0], cases[0][1], ("sm90g", "sm90"))
    print(line, flush=True)
    for name, c in cases:
        ok, line, _ = check_case(name, c)
        n_ok += ok
        print(line, flush=True)
    # A bad block id: recorded, read as zeros, the context survives.
    c = Case(3, 1, 16, 1, [300, 500, 77], bad=True)
    c.error.copy_(torch.tensor([0, INT_MAX, INT_MAX, 0], dtype=torch.int32))
    c.schedule()
    out, lse = c.outputs()
    c.run("sm90", out, lse)
    torch.cuda.synchronize()
    e = c.error.tolist()
    good = (e[0] & 2) != 0 and e[2] == c.bad_request and not torch.isnan(out[[i for i in range(3) if i != c.bad_request]].float()).any()
    print(f"{'PASS' if good else 'FAIL'} bad block id: error record {e}, request {c.bad_request}", flush=True)
    n_ok += good
    print(f"correctness: {n_ok}/{len(cases) + 1} passed", flush=True)
    return n_ok == len(cases) + 1


L2_ROTATE = 200 * 2**20  # cache copies a graph cycles through: at least four times the 50 MB L2


def graph_us(case, path, out, lse, replays=15):
    """Median time per call of a CUDA graph of K = max(copies, 8) calls that cycle the cache copies."""
    calls = max(len(case.kcopies), 8)
    for i in range(2):
        case.run(path, out, lse, i)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            case.run(path, out, lse, i)
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        e0, e1 = torch.cuda.Event(True), torch.cuda.Event(True)
        e0.record()
        g.replay()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) * 1000 / calls)
    del g
    return sorted(times)[len(times) // 2]


LATENCY_CASES = [(b, h, sk) for b in (1, 4, 16, 32) for h in (16, 128) for sk in (1024, 4096, 32768)]


def latency():
    paths = ["split", "split+m", "sm90", "sm90+m"] + [v + m for v in SM90_VARIANTS for m in ("", "+m")]
    print(f"{'case':22s}" + "".join(f" {p[-14:]:>14s}" for p in paths), flush=True)
    for b, hq, sk in LATENCY_CASES:
        c = Case(b, 1, hq, 1, [sk] * b)
        c.rotate(L2_ROTATE)
        c.schedule()
        out, lse = c.outputs()
        t = {p: graph_us(c, p, out, lse) if c.fusable(p) or not p.endswith("+m") else float("nan") for p in paths}
        print(f"{f'b{b} h{hq} s_k{sk}':22s}" + "".join(f" {t[p]:14.2f}" for p in paths), flush=True)
        del c, out, lse
        torch.cuda.empty_cache()


# The stamps of kernels/include/probe_timeline.cuh (ProbeStamp), in its order.
def probe_stamps():
    import re
    text = open(os.path.join(root, "kernels", "include", "probe_timeline.cuh")).read()
    enum = text[text.index("enum ProbeStamp"):]
    enum = enum[:enum.index("};")]
    names = re.findall(r"kStamp(\w+),", enum)
    ctas = int(re.search(r"kProbeCtas = (\d+);", text).group(1))
    return {i: n for i, n in enumerate(names)}, ctas


STAMPS, PROBE_CTAS = probe_stamps()


def timeline():
    """The stamps of the last call of a graph that cycles cache copies, as graph_us times it."""
    for b, hq, sk in ((1, 16, 1024), (1, 16, 32768), (1, 128, 4096), (1, 128, 32768), (4, 128, 4096), (128, 16, 4096),
                      (128, 128, 4096)):
        c = Case(b, 1, hq, 1, [sk] * b)
        c.rotate(L2_ROTATE)
        c.schedule()
        out, lse = c.outputs()
        for probe in TIMELINE_PROBES:
            for fused in ("", "+m"):
                if fused and not c.fusable(probe + fused):
                    continue
                mod = probe_mods[probe]
                mod.zero_global("fmla_probe_timeline")
                us = graph_us(c, probe + fused, out, lse, replays=3)
                # The table's width from its size: a probe of an older revision may have fewer stamps.
                nst = mod.global_ptr("fmla_probe_timeline")[1] // (PROBE_CTAS * 8)
                raw = torch.frombuffer(bytearray(mod.global_bytes("fmla_probe_timeline", PROBE_CTAS * nst * 8)), dtype=torch.int64)
                tl = raw.view(PROBE_CTAS, nst)
                work = tl[(tl[:, 0] > 0) & ((tl[:, 8] > 0) | (tl[:, 9] > 0))]
                if len(work) == 0:
                    print(f"b{b} h{hq} s_k{sk} {probe}{fused}: no stamps", flush=True)
                    continue
                t0 = tl[tl[:, 0] > 0, 0].min()
                cols = []
                for i, name in STAMPS.items():
                    if i >= nst:
                        continue
                    v = work[:, i]
                    v = v[v > 0]
                    if len(v) == 0:
                        continue
                    d = (v - t0).double() / 1000
                    cols.append(f"{name} {d.median().item():.2f}/{d.max().item():.2f}")
                print(f"b{b} h{hq} s_k{sk} {probe}{fused} ({us:.1f} µs a call; {len(work)} CTAs; µs from the first entry, median/max): "
                      + "; ".join(cols), flush=True)
        del c, out, lse
        torch.cuda.empty_cache()


def timing():
    paths = ["sm90", "split"] + SM90_VARIANTS
    print(f"{'case':34s} {'sm90 us':>9s} {'mma.sync us':>11s} {'x':>6s} {'sm90 GB/s':>9s} {'sm90 TF':>8s}"
          + "".join(f" {v[:14]:>14s}" for v in SM90_VARIANTS))
    for b, sq, hq, sk, var in ((128, 1, 16, 4096, False), (128, 1, 16, 16384, False), (128, 1, 64, 8192, False),
                               (128, 2, 64, 8192, False), (128, 1, 128, 4096, False), (128, 1, 128, 16384, False),
                               (128, 2, 128, 8192, False), (128, 1, 32, 8192, True), (128, 2, 128, 8192, True),
                               (1, 1, 16, 32768, False), (4, 1, 128, 4096, False), (32, 1, 128, 32768, False)):
        sl = vary(b, sk, sq) if var else [sk] * b
        c = Case(b, sq, hq, 1, sl, causal=False)
        c.schedule()
        out, lse = c.outputs()
        t = {}
        for path in paths:
            for _ in range(3):
                c.run(path, out, lse)
            torch.cuda.synchronize()
            e0, e1 = torch.cuda.Event(True), torch.cuda.Event(True)
            e0.record()
            for _ in range(20):
                c.run(path, out, lse)
            e1.record()
            e1.synchronize()
            t[path] = e0.elapsed_time(e1) * 1000 / 20
        mean = sum(sl) / b
        byts = b * (sq * hq * 576 * 2 + mean * 576 * 2 + sq * hq * 512 * 2)
        flops = 2 * b * sq * hq * mean * (576 + 512)
        name = f"b{b} sq{sq} h{hq} sk{sk} {'var' if var else 'fixed'}"
        print(f"{name:34s} {t['sm90']:9.1f} {t['split']:11.1f} {t['split'] / t['sm90']:6.2f} "
              f"{byts / t['sm90'] / 1e3:9.0f} {flops / t['sm90'] / 1e6:8.1f}"
              + "".join(f" {t[v]:14.1f}" for v in SM90_VARIANTS), flush=True)
        del c, out, lse
        torch.cuda.empty_cache()


if __name__ == "__main__":
    k = K["sm90", "bf16", 576]
    print(f"decode_sm90 bf16: {k.attr(cudrv.CU_FUNC_ATTRIBUTE_NUM_REGS)} registers, "
          f"{k.attr(cudrv.CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)} local bytes", flush=True)
    print("JIT log (decode_sm90):\n" + sm90_mod.log()[-4000:], flush=True)
    ok = True if "--timing-only" in sys.argv or "--latency" in sys.argv or TIMELINE else correctness("--quick" in sys.argv)
    if "--latency" in sys.argv:
        latency()
    if TIMELINE:
        timeline()
    if "--no-timing" not in sys.argv and "--latency" not in sys.argv and not TIMELINE:
        timing()
    sys.exit(0 if ok else 1)
