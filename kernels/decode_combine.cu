// targets: sm_80 sm_90a
// decode_combine.cu: merges the fp32 partial results of split requests by their LSE.
//
// Work: CTA (x, y, z) handles query rows [8x, 8x+8) of KV head y of request z; warp w takes row
// 8x + w. A request with one split returns at once (the decode kernel wrote it directly).
// Otherwise the warp reads the split LSEs (log2 domain) of slots num_splits[z] … num_splits[z+1]−1,
// reduces their max and Σ 2^(lse_i − max) across lanes, and accumulates
// out = Σ_i 2^(lse_i − lse) · o_i with each lane owning 16 of the 512 columns (four float4 at
// columns 4·lane + 128·k). It writes out in q's dtype and lse in natural log (+inf when no split
// saw a key). No shared memory, no CTA barriers.
#include "decode_common.cuh"
#include "grid_dependency.cuh"
#include "numeric.cuh"

namespace fmla {

constexpr int kCombineWarps = 8;
constexpr int kCombineThreads = kCombineWarps * kWarpSize;
// Each lane owns four float4 of a row: 16 of the kHeadDimV columns.
static_assert(kHeadDimV == 4 * 4 * kWarpSize, "combine_row covers a row with 4 float4 per lane");

struct __attribute__((aligned(8))) u32x2 {
    u32 lo, hi;
};

template <typename T>
FMLA_DEVICE void combine_row(const CombineParams& p) {
    const int request = block_idx_z();
    const int kv_head = block_idx_y();
    const int r = block_idx_x() * kCombineWarps + warp_idx();
    const int lane = lane_idx();
    if (r >= p.rows) return;
    const int* num_splits = reinterpret_cast<const int*>(p.num_splits);
    const int first = num_splits[request];
    int count = num_splits[request + 1] - first;
    if (count <= 1) return;
    const int slots = p.batch + p.num_parts;
    if (first < 0 || first + count > slots) return;  // a plan that does not belong to this batch

    const float* lse_accum = reinterpret_cast<const float*>(p.lse_accum);
    auto lse_of = [&](int i) { return lse_accum[split_row(first + i, kv_head, p.h_kv, p.rows, r)]; };

    float mx = -inf_f();
    for (int i = lane; i < count; i += kWarpSize) mx = fmax_(mx, lse_of(i));
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) mx = fmax_(mx, shfl_xor(mx, m));
    float sum = 0.0f;
    if (mx != -inf_f()) {
        for (int i = lane; i < count; i += kWarpSize) sum += exp2_approx(lse_of(i) - mx);
    }
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) sum += shfl_xor(sum, m);
    const bool empty = !(sum > 0.0f);
    const float lse2 = empty ? 0.0f : mx + log2_approx(sum);

    float4v acc[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) acc[k] = float4v{0.0f, 0.0f, 0.0f, 0.0f};
    if (!empty) {
        const float* o_accum = reinterpret_cast<const float*>(p.o_accum);
        for (int i = 0; i < count; ++i) {
            const float w = exp2_approx(lse_of(i) - lse2);
            const float4v* row =
                reinterpret_cast<const float4v*>(o_accum + split_row(first + i, kv_head, p.h_kv, p.rows, r) * kHeadDimV);
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                float4v v = row[lane + 32 * k];
                acc[k].x += w * v.x;
                acc[k].y += w * v.y;
                acc[k].z += w * v.z;
                acc[k].w += w * v.w;
            }
        }
    }

    const QueryRow row = query_row(r, kv_head, p.group);
    T* out_row = reinterpret_cast<T*>(p.output) + output_offset(p, request, row);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        u32x2 packed = {ElemOps<T>::pack2(acc[k].x, acc[k].y), ElemOps<T>::pack2(acc[k].z, acc[k].w)};
        *reinterpret_cast<u32x2*>(out_row + 4 * (lane + 32 * k)) = packed;
    }
    if (lane == 0) {
        float* lse = reinterpret_cast<float*>(p.lse);
        lse[lse_offset(p, request, row)] = empty ? inf_f() : lse2 * kLn2;
    }
}

}  // namespace fmla

FMLA_MODULE_ABI();
FMLA_EXPORT_ABI(CombineParams);

namespace fmla {
// One warp per query row, kCombineWarps rows per CTA; no shared memory.
template <typename T>
constexpr KernelDesc combine_desc() {
    constexpr int code = ElemOps<T>::kCode;
    return kernel_desc(kCombineThreads).rows(kCombineWarps).types(code, code, code);
}
}  // namespace fmla

#define FMLA_COMBINE_KERNEL(name, T) \
    FMLA_KERNEL(name, CombineParams, fmla::combine_desc<T>()) { fmla::combine_row<T>(p); }

FMLA_COMBINE_KERNEL(mla_decode_combine_bf16, fmla::bf16)
FMLA_COMBINE_KERNEL(mla_decode_combine_fp16, fmla::fp16)
