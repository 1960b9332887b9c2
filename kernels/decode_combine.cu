// decode_combine.cu: merges the fp32 partial results of split requests by their LSE.
//
// Work: CTA (x, y, z) handles query rows [8x, 8x+8) of KV head y of request z; warp w takes row
// 8x + w. A request with one split returns at once (decode_splitkv.cu wrote it directly).
// Otherwise the warp reads the split LSEs (log2 domain) of slots num_splits[z] … num_splits[z+1]−1,
// reduces their max and Σ 2^(lse_i − max) across lanes, and accumulates
// out = Σ_i 2^(lse_i − lse) · o_i with each lane owning 16 of the 512 columns (four float4 at
// columns 4·lane + 128·k). It writes out in q's dtype and lse in natural log (+inf when no split
// saw a key). No shared memory, no CTA barriers.
#include "decode_common.cuh"
#include "numeric.cuh"

namespace fmla {

struct CombineParams {
    u64 o_accum, lse_accum, num_splits, output, lse;
    i64 o_batch_stride, o_seq_stride, o_head_stride;
    i64 lse_batch_stride, lse_head_stride;
    int batch, s_q, h_q, h_kv, group, rows;
    int num_parts;
    int pad;
};

constexpr int kCombineWarps = 8;
constexpr int kCombineHeadDimV = 512;
constexpr float kCombineLn2 = 0.693147180559945309f;

struct __attribute__((aligned(16))) float4v {
    float x, y, z, w;
};

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
    auto lse_of = [&](int i) { return lse_accum[(static_cast<i64>(first + i) * p.h_kv + kv_head) * p.rows + r]; };

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
            const float4v* row = reinterpret_cast<const float4v*>(
                o_accum + ((static_cast<i64>(first + i) * p.h_kv + kv_head) * p.rows + r) * kCombineHeadDimV);
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

    const int token = r / p.group;
    const int head = kv_head * p.group + (r - token * p.group);
    u8* out_row = reinterpret_cast<u8*>(p.output) +
                  2 * (static_cast<i64>(request) * p.o_batch_stride + static_cast<i64>(token) * p.o_seq_stride +
                       static_cast<i64>(head) * p.o_head_stride);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        u32x2 packed = {ElemOps<T>::pack2(acc[k].x, acc[k].y), ElemOps<T>::pack2(acc[k].z, acc[k].w)};
        *reinterpret_cast<u32x2*>(out_row + 2 * (4 * (lane + 32 * k))) = packed;
    }
    if (lane == 0) {
        float* lse = reinterpret_cast<float*>(p.lse);
        lse[static_cast<i64>(request) * p.lse_batch_stride + static_cast<i64>(head) * p.lse_head_stride + token] =
            empty ? inf_f() : lse2 * kCombineLn2;
    }
}

}  // namespace fmla

extern "C" FMLA_GLOBAL FMLA_LAUNCH_BOUNDS(256, 1) void mla_decode_combine_bf16(
    const FMLA_GRID_CONSTANT fmla::CombineParams p) {
    fmla::combine_row<fmla::bf16>(p);
}

extern "C" FMLA_GLOBAL FMLA_LAUNCH_BOUNDS(256, 1) void mla_decode_combine_fp16(
    const FMLA_GRID_CONSTANT fmla::CombineParams p) {
    fmla::combine_row<fmla::fp16>(p);
}
