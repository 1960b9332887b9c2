// base.cuh: the few CUDA language pieces the kernels need, without CUDA toolkit headers.
//
// clang compiles kernels/*.cu with -nocudainc -nocudalib, so nothing from the toolkit is
// visible: attributes, thread indices, barriers and atomics are spelled here through clang's
// NVPTX builtins and inline PTX.
#pragma once

#define FMLA_GLOBAL __attribute__((global))
#define FMLA_DEVICE __attribute__((device)) __attribute__((always_inline)) inline
// After a lambda's parameter list: the lambda is always inlined (device code passes work to
// helpers such as for_each_piece as lambdas and must not pay for a call).
#define FMLA_INLINE_LAMBDA __attribute__((always_inline))
#define FMLA_SHARED __attribute__((shared))
#define FMLA_LAUNCH_BOUNDS(threads, min_blocks) __attribute__((launch_bounds(threads, min_blocks)))
// clang-19 has no __grid_constant__; kernels read their by-value parameter struct field by
// field (ld.param) and never take its address, so no local copy is made.
#define FMLA_GRID_CONSTANT

namespace fmla {

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

constexpr int kWarpSize = 32;
constexpr int kIntMax = 0x7fffffff;

FMLA_DEVICE int thread_idx() { return __nvvm_read_ptx_sreg_tid_x(); }
FMLA_DEVICE int block_idx_x() { return __nvvm_read_ptx_sreg_ctaid_x(); }
FMLA_DEVICE int block_idx_y() { return __nvvm_read_ptx_sreg_ctaid_y(); }
FMLA_DEVICE int block_idx_z() { return __nvvm_read_ptx_sreg_ctaid_z(); }
FMLA_DEVICE int block_dim_x() { return __nvvm_read_ptx_sreg_ntid_x(); }
FMLA_DEVICE int grid_dim_x() { return __nvvm_read_ptx_sreg_nctaid_x(); }
FMLA_DEVICE int lane_idx() { return thread_idx() & (kWarpSize - 1); }
FMLA_DEVICE int warp_idx() { return thread_idx() / kWarpSize; }

// Barrier 0 over the whole CTA.
FMLA_DEVICE void sync_threads() { asm volatile("bar.sync 0;" ::: "memory"); }

// Named barrier `id` (1..15) over `count` threads (a multiple of 32).
FMLA_DEVICE void named_barrier(int id, int count) {
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(count) : "memory");
}

// Named barrier `id` over `count` threads that may reach it from different instructions
// (barrier.sync without .aligned; bar.sync requires every thread to execute the same one).
FMLA_DEVICE void named_barrier_unaligned(int id, int count) {
    asm volatile("barrier.sync %0, %1;" ::"r"(id), "r"(count) : "memory");
}

FMLA_DEVICE float shfl_xor(float v, int mask) {
    float r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(mask));
    return r;
}

// `v` of lane 0 in every lane (all 32 lanes active). Besides broadcasting, it tells ptxas the
// value is warp-uniform, so that branches on it are not divergent (ptxas serializes wgmma in code
// it thinks divergent).
FMLA_DEVICE int warp_uniform(int v) {
    asm volatile("shfl.sync.idx.b32 %0, %0, 0, 0x1f, 0xffffffff;" : "+r"(v));
    return v;
}

// `v` of lane `src` (all 32 lanes active).
FMLA_DEVICE u64 shfl_idx(u64 v, int src) {
    u32 lo = static_cast<u32>(v), hi = static_cast<u32>(v >> 32);
    asm volatile("shfl.sync.idx.b32 %0, %0, %1, 0x1f, 0xffffffff;" : "+r"(lo) : "r"(src));
    asm volatile("shfl.sync.idx.b32 %0, %0, %1, 0x1f, 0xffffffff;" : "+r"(hi) : "r"(src));
    return static_cast<u64>(hi) << 32 | lo;
}

FMLA_DEVICE int shfl_xor(int v, int mask) {
    int r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(r) : "r"(v), "r"(mask));
    return r;
}

// Transposes a 4 × 4 matrix of words held by the four lanes of a quad (lanes 4k … 4k + 3): lane q
// holds row q in v on entry and column q on exit (v[j] = what lane j held in v[q]). Two rounds of
// two shuffles; all 32 lanes call it.
FMLA_DEVICE void quad_transpose(u32 (&v)[4], int q) {
#pragma unroll
    for (int b = 1; b <= 2; b <<= 1) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            if (j & b) continue;
            const bool upper = (q & b) != 0;
            const u32 recv = static_cast<u32>(shfl_xor(static_cast<int>(upper ? v[j] : v[j | b]), b));
            if (upper) {
                v[j] = recv;
            } else {
                v[j | b] = recv;
            }
        }
    }
}

FMLA_DEVICE void atomic_or_global(int* p, int v) {
    asm volatile("red.global.or.b32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

FMLA_DEVICE void atomic_min_global(int* p, int v) {
    asm volatile("red.global.min.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

FMLA_DEVICE void atomic_max_global(int* p, int v) {
    asm volatile("red.global.max.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// The dynamic shared memory this launch gave each CTA, in bytes.
FMLA_DEVICE u32 dynamic_smem_size() {
    u32 r;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(r));
    return r;
}

FMLA_DEVICE float fmax_(float a, float b) { return __builtin_fmaxf(a, b); }

// 2^x with the hardware approximation (ex2.approx.ftz); exact enough for softmax weights.
FMLA_DEVICE float exp2_approx(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

// log2(x) with the hardware approximation.
FMLA_DEVICE float log2_approx(float x) {
    float r;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

FMLA_DEVICE float inf_f() { return __builtin_huge_valf(); }

// Address of a shared-memory object in the shared window, as PTX's shared-space instructions
// (ldmatrix, cp.async, stmatrix) expect it.
FMLA_DEVICE u32 smem_addr(const void* p) {
    u64 a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return static_cast<u32>(a);
}

}  // namespace fmla
