// tma.cuh: the tensor memory accelerator (sm_90): tiled bulk tensor copies global → shared that
// complete on an mbarrier, and tensor-map prefetch.
//
// A tensor map (CUtensorMap, 128 bytes, 64-byte aligned) is encoded on the host with
// cuTensorMapEncodeTiled and reached here through its generic address: a kernel parameter
// (param_address below) or global memory. Boxes outside the tensor's bounds are filled with
// zeros and still count their full size towards the barrier's transaction bytes.
#pragma once
#include "../base.cuh"

namespace fmla::sm90 {

constexpr int kTensorMapBytes = 128;
constexpr int kTensorMapAlign = 64;

// Loads the 4-D box at coordinates (c0, c1, c2, c3) (innermost first, in elements) into shared
// memory at `dst`; its bytes complete on barrier `bar`.
FMLA_DEVICE void tma_load_4d(u32 dst, u64 tensor_map, u32 bar, int c0, int c1, int c2, int c3) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%3, %4, %5, %6}], [%2];" ::"r"(dst),
        "l"(tensor_map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
        : "memory");
}

// As tma_load_4d, with an L2 cache policy (from createpolicy).
FMLA_DEVICE void tma_load_4d_hint(u32 dst, u64 tensor_map, u32 bar, int c0, int c1, int c2, int c3, u64 policy) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint"
        " [%0], [%1, {%3, %4, %5, %6}], [%2], %7;" ::"r"(dst),
        "l"(tensor_map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "l"(policy)
        : "memory");
}

// Prefetches the 4-D box at (c0, c1, c2, c3) into L2 (no shared memory, no barrier): a later
// tma_load of the same box then hits L2.
FMLA_DEVICE void tma_prefetch_l2_4d(u64 tensor_map, int c0, int c1, int c2, int c3) {
    asm volatile("cp.async.bulk.prefetch.tensor.4d.L2.global.tile [%0, {%1, %2, %3, %4}];" ::"l"(tensor_map), "r"(c0),
                 "r"(c1), "r"(c2), "r"(c3)
                 : "memory");
}

// An L2 policy that evicts the lines it covers first (data read once).
FMLA_DEVICE u64 l2_policy_evict_first() {
    u64 policy;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    return policy;
}

// An L2 policy of normal priority.
FMLA_DEVICE u64 l2_policy_evict_normal() {
    u64 policy;
    asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(policy));
    return policy;
}

FMLA_DEVICE void prefetch_tensor_map(u64 tensor_map) {
    asm volatile("prefetch.tensormap [%0];" ::"l"(tensor_map) : "memory");
}

}  // namespace fmla::sm90

// The generic address of a kernel's by-value parameter `param` (the PTX name of a kernel's
// first parameter is <entry>_param_0). clang-19 has no __grid_constant__, so a tensor map inside
// the parameter struct is reached through this address; the struct itself is never copied.
#define FMLA_PARAM_ADDRESS(entry) \
    ([]() -> fmla::u64 {                                                                  \
        fmla::u64 a;                                                                      \
        asm("mov.u64 %0, " #entry "_param_0;\n\tcvta.param.u64 %0, %0;" : "=l"(a));     \
        return a;                                                                         \
    }())
