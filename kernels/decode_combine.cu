// targets: sm_80 sm_90a
// decode_combine.cu: merges the fp32 partial results of split requests by their LSE.
//
// Work: CTA (x, y, z) handles the 8-row group x (rows [8x, 8x+8)) of KV head y of request z,
// which the split workspace keeps per split as one contiguous region of [64 chunks of 8
// columns][8 rows][8 columns] (split_out_offset). A request with one split returns at once (the
// decode kernel wrote it directly). Otherwise warp w reads row 8x + w's split LSEs (log2 domain)
// of slots num_splits[z] … num_splits[z+1]−1 and reduces their max and Σ 2^(lse_i − max) across
// lanes (lse = log2 of the sum); then, 32 splits at a time, the warps write the rows' weights
// 2^(lse_i − lse) to shared memory and every warp accumulates 4 × 32 float4 of the region, one
// 512-byte contiguous read per instruction (lane l of warp w, step k: float4 32(w + 8k) + l, that
// is chunk 2(w + 8k) + l/16 of row (l/2) % 8), in split order. It writes out in q's dtype and lse
// in natural log (+inf when no split saw a key).
#include "decode_common.cuh"
#include "grid_dependency.cuh"
#include "numeric.cuh"

namespace fmla {

constexpr int kCombineWarps = 8;
constexpr int kCombineThreads = kCombineWarps * kWarpSize;
static_assert(kCombineWarps == kSplitRowGroup, "a combine CTA takes one row group of the split workspace");
// float4 of one row group of one split (kSplitGroupUnits) each lane accumulates, all of one row.
constexpr int kVecsPerLane = kSplitGroupUnits / kCombineThreads;
static_assert(kVecsPerLane == 4, "four float4 per lane cover a row group");
// Splits whose weights are staged at once.
constexpr int kCombineBatch = kWarpSize;

struct __attribute__((aligned(8))) u32x2 {
    u32 lo, hi;
};

// The staged weights of a batch of splits: [row of the group][split of the batch] (static shared memory).
FMLA_SHARED float combine_weights[kSplitRowGroup * kCombineBatch];

template <typename T>
FMLA_DEVICE void combine_rows(const CombineParams& p) {
    const int request = block_idx_z();
    const int kv_head = block_idx_y();
    const int row0 = block_idx_x() * kSplitRowGroup;
    const int warp = warp_idx();
    const int lane = lane_idx();
    const int* num_splits = reinterpret_cast<const int*>(p.num_splits);
    const int first = num_splits[request];
    int count = num_splits[request + 1] - first;
    if (count <= 1) return;
    const int slots = p.batch + p.num_parts;
    if (first < 0 || first + count > slots) return;  // a plan that does not belong to this batch

    // Warp `warp`: the LSE of row row0 + warp.
    const int r = row0 + warp;
    const bool valid = r < p.rows;
    const float* lse_accum = reinterpret_cast<const float*>(p.lse_accum);
    auto lse_of = [&](int i) { return lse_accum[split_row(first + i, kv_head, p.h_kv, p.rows, r)]; };
    float mx = -inf_f();
    if (valid) {
        for (int i = lane; i < count; i += kWarpSize) mx = fmax_(mx, lse_of(i));
    }
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
    if (valid && lane == 0) {
        reinterpret_cast<float*>(p.lse)[lse_offset(p, request, query_row(r, kv_head, p.group))] = empty ? inf_f() : lse2 * kLn2;
    }

    // This lane's four float4 of the group, 32(warp + 8k) + lane: all in row `mine` (split_unit).
    static_assert(kWarpSize % (kSplitChunkFloats / 4) == 0, "float4 32m + lane lies in the row of float4 lane");
    const int mine = split_unit(lane).row;
    const float* o_accum = reinterpret_cast<const float*>(p.o_accum);
    const i64 step = split_out_slot_stride(p.h_kv, p.rows);
    const float* region = o_accum + split_out_offset(first, kv_head, p.h_kv, p.rows, row0, 0) + 4 * (32 * warp + lane);
    float4v acc[kVecsPerLane];
#pragma unroll
    for (int k = 0; k < kVecsPerLane; ++k) acc[k] = float4v{0.0f, 0.0f, 0.0f, 0.0f};
    for (int base = 0; base < count; base += kCombineBatch) {
        const int s = base + lane;
        combine_weights[warp * kCombineBatch + lane] = valid && !empty && s < count ? exp2_approx(lse_of(s) - lse2) : 0.0f;
        sync_threads();
        const int n = count - base < kCombineBatch ? count - base : kCombineBatch;
        const float* w = combine_weights + mine * kCombineBatch;
#pragma unroll 2
        for (int i = 0; i < n; ++i) {
            const float wi = w[i];
            const float* src = region + (base + i) * step;
#pragma unroll
            for (int k = 0; k < kVecsPerLane; ++k) fma4(acc[k], wi, *reinterpret_cast<const float4v*>(src + 4 * kCombineThreads * k));
        }
        sync_threads();
    }

    const int out_r = row0 + mine;
    if (out_r >= p.rows) return;
    T* out_row = reinterpret_cast<T*>(p.output) + output_offset(p, request, query_row(out_r, kv_head, p.group));
#pragma unroll
    for (int k = 0; k < kVecsPerLane; ++k) {
        const int col = split_unit(kWarpSize * (warp + kCombineWarps * k) + lane).col;
        u32x2 packed = {ElemOps<T>::pack2(acc[k].x, acc[k].y), ElemOps<T>::pack2(acc[k].z, acc[k].w)};
        *reinterpret_cast<u32x2*>(out_row + col) = packed;
    }
}

}  // namespace fmla

FMLA_MODULE_ABI();
FMLA_EXPORT_ABI(CombineParams);

namespace fmla {
// One row group (kCombineWarps rows) per CTA; 1 KB of static shared memory, no dynamic.
template <typename T>
constexpr KernelDesc combine_desc() {
    constexpr int code = ElemOps<T>::kCode;
    return kernel_desc(kCombineThreads).rows(kCombineWarps).types(code, code, code);
}
}  // namespace fmla

#define FMLA_COMBINE_KERNEL(name, T) \
    FMLA_KERNEL(name, CombineParams, fmla::combine_desc<T>()) { fmla::combine_rows<T>(p); }

FMLA_COMBINE_KERNEL(mla_decode_combine_bf16, fmla::bf16)
FMLA_COMBINE_KERNEL(mla_decode_combine_fp16, fmla::fp16)
