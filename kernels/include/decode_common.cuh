// decode_common.cuh: what the three decode kernels agree on: the schedule's part record, the
// error record of guarded inputs, and the size of a schedule block.
#pragma once
#include "base.cuh"

namespace fmla {

// Unit of scheduled work: 64 tokens of one request (one page when the page size is 64).
constexpr int kBlockN = 64;
// Cost of a request piece beyond its blocks: Q load, epilogue and combine, in blocks.
constexpr int kFixedOverheadBlocks = 5;

// One part of the schedule (one CTA's share along grid.z), 8 × int32, same layout as
// FlashMla.Mla.DecodePart.
struct DecodePart {
    int begin_request;   // == batch when the part has no work
    int end_request;     // inclusive
    int begin_block;     // inclusive, within begin_request
    int end_block;       // exclusive, within end_request
    int begin_split;     // split slot of the first piece, within its request
    int first_is_split;  // the first request's piece is one of several
    int last_is_split;   // the last request's piece is one of several
    int pad;
};

// Error record of guarded inputs: int32[4], initialised by the host to {0, INT_MAX, INT_MAX, 0}.
enum ErrorFlag : int { kErrorSeqlen = 1, kErrorBlockId = 2 };

FMLA_DEVICE void report_bad_seqlen(int* error, int request) {
    atomic_or_global(error, kErrorSeqlen);
    atomic_min_global(error + 1, request);
}

FMLA_DEVICE void report_bad_block(int* error, int request) {
    atomic_or_global(error, kErrorBlockId);
    atomic_min_global(error + 2, request);
}

// A request's length as the kernels use it: a length outside [0, capacity] is reported and
// treated as 0, so nothing is read for it.
FMLA_DEVICE int guarded_seqlen(const int* seqlens, int request, int capacity, int* error, bool report) {
    int len = seqlens[request];
    if (len < 0 || len > capacity) {
        if (report) report_bad_seqlen(error, request);
        return 0;
    }
    return len;
}

FMLA_DEVICE int blocks_of(int len) { return len > 0 ? (len + kBlockN - 1) / kBlockN : 0; }

}  // namespace fmla
