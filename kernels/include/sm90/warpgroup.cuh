// warpgroup.cuh: warp-specialisation primitives (sm_90): register reallocation between
// warpgroups, proxy fences for shared memory that the async proxy reads, stmatrix, elect.
#pragma once
#include "../base.cuh"

namespace fmla::sm90 {

constexpr int kWarpgroupThreads = 128;

// The warpgroup index, broadcast from lane 0 so that the compiler knows it is warp-uniform
// (roles branch on it; setmaxnreg and wgmma must not sit in code it thinks divergent).
FMLA_DEVICE int warpgroup_idx() { return warp_uniform(thread_idx() / kWarpgroupThreads); }
FMLA_DEVICE int warpgroup_thread() { return thread_idx() % kWarpgroupThreads; }

// Raise / lower this warpgroup's per-thread register limit (sm_90a; all warps of the warpgroup
// execute it; needs a register cap at kernel entry, i.e. launch bounds with 1 CTA per SM).
template <int N>
FMLA_DEVICE void setmaxnreg_inc() {
    static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg takes a multiple of 8 in [24, 256]");
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(N));
}

template <int N>
FMLA_DEVICE void setmaxnreg_dec() {
    static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg takes a multiple of 8 in [24, 256]");
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(N));
}

// Orders this thread's earlier generic-proxy shared-memory writes before later async-proxy
// accesses (wgmma operands, TMA), once a barrier has been passed.
FMLA_DEVICE void fence_proxy_async_shared() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// Four 8×8 b16 matrices from the mma fragment layout to shared memory; lanes 8i … 8i+7 give
// the row addresses of matrix i, register i of each lane holds its two elements of matrix i.
FMLA_DEVICE void stmatrix_x4(u32 addr, u32 r0, u32 r1, u32 r2, u32 r3) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(addr), "r"(r0), "r"(r1),
                 "r"(r2), "r"(r3)
                 : "memory");
}

// True in exactly one lane of the (fully active) warp.
FMLA_DEVICE bool elect_one() {
    u32 pred;
    asm volatile(
        "{\n\t.reg .pred p;\n\t.reg .b32 r;\n\t"
        "elect.sync r|p, 0xffffffff;\n\t"
        "selp.u32 %0, 1, 0, p;\n\t}"
        : "=r"(pred));
    return pred != 0;
}

FMLA_DEVICE void st_shared_u32(u32 addr, u32 v) { asm volatile("st.shared.b32 [%0], %1;" ::"r"(addr), "r"(v) : "memory"); }
FMLA_DEVICE void st_shared_v4(u32 addr, u32 a, u32 b, u32 c, u32 d) {
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};" ::"r"(addr), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}
FMLA_DEVICE float ld_shared_f32(u32 addr) {
    float v;
    asm volatile("ld.shared.f32 %0, [%1];" : "=f"(v) : "r"(addr) : "memory");
    return v;
}
FMLA_DEVICE void st_shared_f32(u32 addr, float v) { asm volatile("st.shared.f32 [%0], %1;" ::"r"(addr), "f"(v) : "memory"); }

}  // namespace fmla::sm90
