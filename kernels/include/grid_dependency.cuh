// grid_dependency.cuh: programmatic dependent launch (PDL) and the gpu-scope synchronization the
// in-kernel split merge needs.
//
// A decode kernel launched with the programmatic-stream-serialization attribute may start while
// the kernel before it on the stream is still running. It does its prologue (reading the plan's
// part record, prefetching the block table into L2, initialising barriers) and then calls
// wait_for_prior_grid(), which returns once the previous grid has completed and its memory is
// visible; only then does it read q or write anything. It calls allow_dependent_launch() right
// after that wait, so that when the next kernel's prologue starts, this kernel has passed its own
// wait (everything before the previous grid is complete; the plan was written before the step's
// first decode). On targets before sm_90 both are no-ops: the host launches without PDL there.
#pragma once
#include "base.cuh"

namespace fmla {

FMLA_DEVICE void wait_for_prior_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

FMLA_DEVICE void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Brings a global line into L2 (harmless if the data changes before it is read).
FMLA_DEVICE void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// ---- gpu-scope flags ---------------------------------------------------------------------------

FMLA_DEVICE void fence_gpu() { asm volatile("fence.acq_rel.gpu;" ::: "memory"); }

// Adds v with release semantics at gpu scope; returns the old value.
FMLA_DEVICE int atomic_add_release_gpu(int* p, int v) {
    int old;
    asm volatile("atom.release.gpu.global.add.s32 %0, [%1], %2;" : "=r"(old) : "l"(p), "r"(v) : "memory");
    return old;
}

FMLA_DEVICE int load_acquire_gpu(const int* p) {
    int v;
    asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

FMLA_DEVICE void store_relaxed_gpu(int* p, int v) {
    asm volatile("st.relaxed.gpu.global.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

FMLA_DEVICE void nanosleep(u32 ns) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    asm volatile("nanosleep.u32 %0;" ::"r"(ns));
#endif
}

// Loads that bypass L1 (data another CTA wrote during this grid).
FMLA_DEVICE float load_l2_f32(const float* p) {
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

struct __attribute__((aligned(16))) float4v {
    float x, y, z, w;
};

// acc += w · v, component by component.
FMLA_DEVICE void fma4(float4v& acc, float w, const float4v& v) {
    acc.x += w * v.x;
    acc.y += w * v.y;
    acc.z += w * v.z;
    acc.w += w * v.w;
}

FMLA_DEVICE float4v load_l2_f32x4(const float* p) {
    float4v v;
    asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "l"(p));
    return v;
}

}  // namespace fmla
