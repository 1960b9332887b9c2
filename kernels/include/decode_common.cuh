// decode_common.cuh: device code every decode path shares: guarded inputs and the error record,
// the walk of a schedule part over its request pieces, and the addressing of query rows, the
// output, the LSE and the split workspace.
#pragma once
#include "base.cuh"
#include "decode_abi.cuh"

namespace fmla {

// ---- guarded inputs ----------------------------------------------------------------------------

FMLA_DEVICE void report_bad_seqlen(ErrorRecord* error, int request) {
    atomic_or_global(&error->flags, kErrorSeqlen);
    atomic_min_global(&error->bad_seqlen_request, request);
}

FMLA_DEVICE void report_bad_block(ErrorRecord* error, int request) {
    atomic_or_global(&error->flags, kErrorBlockId);
    atomic_min_global(&error->bad_block_request, request);
}

// A request's length as the kernels use it: a length outside [0, capacity] is reported and
// treated as 0, so nothing is read for it.
FMLA_DEVICE int guarded_seqlen(const int* seqlens, int request, int capacity, ErrorRecord* error, bool report) {
    int len = seqlens[request];
    if (len < 0 || len > capacity) {
        if (report) report_bad_seqlen(error, request);
        return 0;
    }
    return len;
}

FMLA_DEVICE int blocks_of(int len) { return len > 0 ? (len + kBlockN - 1) / kBlockN : 0; }

// Whether the launch gave this CTA at least `needed` bytes of dynamic shared memory. When it did
// not, one thread reports it in the error record (the host raises at the synchronization point)
// and the caller must return before touching shared memory.
FMLA_DEVICE bool has_shared_memory(ErrorRecord* error, int needed) {
    if (dynamic_smem_size() >= static_cast<u32>(needed)) return true;
    if (thread_idx() == 0) {
        atomic_or_global(&error->flags, kErrorSharedMemory);
        atomic_max_global(&error->shared_memory_needed, needed);
    }
    return false;
}

// ---- the part walk -----------------------------------------------------------------------------

// One piece of a schedule part: blocks [tile_begin, tile_end) of `request`, which has `seqlen`
// tokens; `split` says whether the piece is one of several, whose partial result goes to split
// slot `slot` (num_splits[request] + the piece's index).
struct DecodePiece {
    int request;
    int tile_begin;
    int tile_end;
    int seqlen;
    bool split;
    int slot;
};

// Calls piece(DecodePiece) for each request piece of part `part_index`, in request order. The
// ranges are clamped to the requests' real block counts, and a piece whose split slot lies
// outside the plan's workspace (a plan of another batch) is skipped. With kWarpUniform (whole
// warps calling), every value read from memory is broadcast from lane 0 (warp_uniform), so that
// the loops and branches of the walk and of `piece` are warp-uniform for the compiler.
template <bool kWarpUniform = false, typename F>
FMLA_DEVICE void for_each_piece(const DecodeParams& p, int part_index, F&& piece) {
    auto u = [](int v) FMLA_INLINE_LAMBDA {
        if constexpr (kWarpUniform) return warp_uniform(v);
        return v;
    };
    const DecodePart* parts = reinterpret_cast<const DecodePart*>(p.parts);
    DecodePart part = parts[part_index];
    if constexpr (kWarpUniform) {
        part.begin_request = u(part.begin_request);
        part.end_request = u(part.end_request);
        part.begin_block = u(part.begin_block);
        part.end_block = u(part.end_block);
        part.begin_split = u(part.begin_split);
        part.first_request_is_split = u(part.first_request_is_split);
        part.last_request_is_split = u(part.last_request_is_split);
    }
    if (part.begin_request >= p.batch || part.begin_request < 0) return;
    const int last = part.end_request < p.batch ? part.end_request : p.batch - 1;
    const int* seqlens = reinterpret_cast<const int*>(p.cache_seqlens);
    const int* num_splits = reinterpret_cast<const int*>(p.num_splits);
    const int capacity = p.max_blocks_per_seq * p.page_block_size;
    const int slots = p.batch + p.num_parts;
    ErrorRecord* error = reinterpret_cast<ErrorRecord*>(p.error);

    for (int request = part.begin_request; request <= last; ++request) {
        // The schedule kernel already reported a bad length; here it only has to stay harmless.
        const int seqlen = u(guarded_seqlen(seqlens, request, capacity, error, false));
        const bool first = request == part.begin_request;
        const bool final_piece = request == part.end_request;
        int tile_begin = first ? part.begin_block : 0;
        int tile_end = final_piece ? part.end_block : blocks_of(seqlen);
        const int available = blocks_of(seqlen);
        if (tile_end > available) tile_end = available;
        if (tile_begin > tile_end) tile_begin = tile_end;
        const bool split = first ? part.first_request_is_split != 0
                                 : (final_piece ? part.last_request_is_split != 0 : false);
        const int slot = u(num_splits[request]) + (first ? part.begin_split : 0);
        if (split && (slot < 0 || slot >= slots)) continue;
        piece(DecodePiece{request, tile_begin, tile_end, seqlen, split, slot});
    }
}

// ---- addressing --------------------------------------------------------------------------------

// The query token and query head of row r of KV head kv_head.
struct QueryRow {
    int token;
    int head;
};

FMLA_DEVICE QueryRow query_row(int r, int kv_head, int group) {
    const int token = r / group;
    return QueryRow{token, kv_head * group + (r - token * group)};
}

// Element offset of a query row in q (P has q_*_stride fields).
template <typename P>
FMLA_DEVICE i64 q_offset(const P& p, int request, QueryRow row) {
    return static_cast<i64>(request) * p.q_batch_stride + static_cast<i64>(row.token) * p.q_seq_stride +
           static_cast<i64>(row.head) * p.q_head_stride;
}

// Element offset of a query row in the output (P has o_*_stride fields: DecodeParams, CombineParams).
template <typename P>
FMLA_DEVICE i64 output_offset(const P& p, int request, QueryRow row) {
    return static_cast<i64>(request) * p.o_batch_stride + static_cast<i64>(row.token) * p.o_seq_stride +
           static_cast<i64>(row.head) * p.o_head_stride;
}

// Element offset of a query row's entry in the LSE [b, h_q, s_q] (seq stride 1).
template <typename P>
FMLA_DEVICE i64 lse_offset(const P& p, int request, QueryRow row) {
    return static_cast<i64>(request) * p.lse_batch_stride + static_cast<i64>(row.head) * p.lse_head_stride + row.token;
}

// Row index of query row r of KV head kv_head in split slot `slot` of lse_accum [slots, h_kv, rows].
FMLA_DEVICE i64 split_row(int slot, int kv_head, int h_kv, int rows, int r) {
    return (static_cast<i64>(slot) * h_kv + kv_head) * rows + r;
}

// Columns of one chunk of a row group of o_accum (an mma/wgmma n8 tile), and the floats of one
// chunk over the group's rows: consecutive chunks of a row are this far apart.
constexpr int kSplitChunkCols = 8;
constexpr int kSplitChunkFloats = kSplitChunkCols * kSplitRowGroup;
static_assert(kSplitChunkCols == 8, "split_out_offset splits a column by shift and mask");

// Rows of one (slot, KV head) of o_accum: rows rounded up to a whole group.
FMLA_DEVICE int split_out_rows(int rows) { return (rows + kSplitRowGroup - 1) / kSplitRowGroup * kSplitRowGroup; }

// Float offset of (row r, column col) of split slot `slot` in o_accum. Each (slot, KV head) holds
// its rows in groups of 8; a group is [64 chunks of 8 columns][8 rows][8 columns], the order of an
// mma/wgmma accumulator, in which lane l of a warp holds columns 8n + 2(l % 4) + {0, 1} of row
// l / 4 (+ 8): a warp's store of one chunk over 8 rows is 256 contiguous bytes, where a row-major
// layout would touch 8 rows. A float4 of columns 4u … 4u + 3 is contiguous.
FMLA_DEVICE i64 split_out_offset(int slot, int kv_head, int h_kv, int rows, int r, int col) {
    const i64 group = (static_cast<i64>(slot) * h_kv + kv_head) * split_out_rows(rows) + (r & ~(kSplitRowGroup - 1));
    return group * kHeadDimV + (col >> 3) * kSplitChunkFloats + (r & (kSplitRowGroup - 1)) * kSplitChunkCols + (col & 7);
}

// float4 units (4 columns of a row) of one row group of o_accum, and the inverse of
// split_out_offset within a group: unit q of a group's memory (q = (offset − group start) / 4) is
// columns col … col + 3 of the group's row `row`.
constexpr int kSplitGroupUnits = kSplitRowGroup * kHeadDimV / 4;
static_assert(kSplitChunkCols % 4 == 0, "a float4 unit lies within one chunk of one row");

struct SplitUnit {
    int row;  // within the group
    int col;
};

FMLA_DEVICE SplitUnit split_unit(int q) {
    const int f = 4 * q;
    const int in_chunk = f % kSplitChunkFloats;
    return SplitUnit{in_chunk / kSplitChunkCols, f / kSplitChunkFloats * kSplitChunkCols + in_chunk % kSplitChunkCols};
}

// Floats between the same (row, column) of consecutive split slots.
FMLA_DEVICE i64 split_out_slot_stride(int h_kv, int rows) { return static_cast<i64>(h_kv) * split_out_rows(rows) * kHeadDimV; }

}  // namespace fmla
