// global_io.cuh: 16-byte global-memory moves, the unit of the copy kernels.
//
// A Vec16 is four 32-bit words; load16_stream reads one through the non-coherent (read-only)
// path, store16 writes one with the default policy (so that a cache page just written can be
// read from L2 by the next kernel). Only qualifiers of PTX ISA 7.0 (what clang-19 emits for
// sm_80) are used: no eviction-priority hints.
#pragma once
#include "base.cuh"

namespace fmla {

constexpr int kVecBytes = 16;

struct __attribute__((aligned(16))) Vec16 {
    u32 x, y, z, w;
};
static_assert(sizeof(Vec16) == kVecBytes, "Vec16 is one 16-byte vector");

// Reads 16 bytes at a 16-byte aligned global address that no kernel writes while this one runs.
FMLA_DEVICE Vec16 load16_stream(const void* p) {
    Vec16 v;
    asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// Writes 16 bytes at a 16-byte aligned global address.
FMLA_DEVICE void store16(void* p, const Vec16& v) {
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
                 : "memory");
}

FMLA_DEVICE void atomic_add_global(int* p, int v) {
    asm volatile("red.global.add.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

FMLA_DEVICE void atomic_min_global_u64(u64* p, u64 v) {
    asm volatile("red.global.min.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

}  // namespace fmla
