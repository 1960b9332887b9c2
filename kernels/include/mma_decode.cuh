// mma_decode.cuh: what the mma.sync decode modules (decode_splitkv.cu, decode_splitkv_compact.cu)
// share: the 16-bit element size, the swizzled Q/K and P tile layouts, and the guarded address of
// a K row.
#pragma once
#include "decode_common.cuh"
#include "numeric.cuh"
#include "tile_layout.cuh"

namespace fmla {

// q, the KV cache, P and the output are 16-bit (bf16 or fp16) in these paths.
constexpr int kElemBytes = static_cast<int>(sizeof(bf16));
static_assert(sizeof(fp16) == sizeof(bf16), "the path's element types have one size");

using QKTile = SwizzledTile<kMaxHeadDim * kElemBytes>;  // 1152-byte rows: Q and K tiles
using PTile = SwizzledTile<kBlockN * kElemBytes>;       // 128-byte rows: P tile

// The global address of token `token`'s K row, or null when the row must not be read. A block id
// outside [0, num_blocks) is reported (by the threads with thread_idx() % 4 == 0).
template <typename T>
FMLA_DEVICE const T* k_row_source(const DecodeParams& p, const int* bt_row, int request, int kv_head, int token,
                                  int seqlen, ErrorRecord* error) {
    if (token >= seqlen) return nullptr;
    int page = token / p.page_block_size;
    int slot = token - page * p.page_block_size;
    int block_id = bt_row[page];
    if (block_id < 0 || block_id >= p.num_blocks) {
        if ((thread_idx() & 3) == 0) report_bad_block(error, request);
        return nullptr;
    }
    i64 offset = static_cast<i64>(block_id) * p.k_block_stride + static_cast<i64>(slot) * p.k_row_stride +
                 static_cast<i64>(kv_head) * p.k_head_stride;
    return reinterpret_cast<const T*>(p.k_cache) + offset;
}

struct __attribute__((aligned(8))) float2v {
    float x, y;
};

}  // namespace fmla
