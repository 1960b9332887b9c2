// decode_abi.cuh: every struct the host passes to or reads from the library's kernels, and the
// constants they share with it. The C# mirrors, of the same names (FlashMla.Kernels.FillParams,
// FlashMla.Mla.DecodePart, FlashMla.Mla.Cuda.ScheduleParams, DecodeParams, CombineParams,
// ErrorRecord, KvAppendParams and KvAppendErrorRecord), are pinned by the tests against the
// layouts the modules export (FMLA_EXPORT_ABI); docs/architecture.md ("Kernel ABI") explains the fields.
//
// Rules: kernels take exactly one by-value parameter struct. 64-bit fields (pointers as u64,
// strides as i64, in elements) come first, then 32-bit fields (int, float); the struct has no
// implicit padding and its size is a multiple of 8 (FMLA_ABI_STRUCT asserts both). A path that
// needs more (a tensor map, say) embeds DecodeParams as its first field and adds explicit pads.
#pragma once
#include "base.cuh"
#include "kernel_desc.cuh"

namespace fmla {

// ---- constants shared by the kernels and the host -------------------------------------------

// Unit of scheduled work: 64 tokens of one request (one page when the page size is 64).
constexpr int kBlockN = 64;
// Cost of a request piece beyond its blocks: Q load, epilogue and combine, in blocks.
constexpr int kFixedOverheadBlocks = 5;
// V is the first 512 columns of K; the output and the split workspace have 512 columns.
constexpr int kHeadDimV = 512;
// The largest q/k head dimension (576 or 512 are accepted).
constexpr int kMaxHeadDim = 576;
constexpr float kLn2 = 0.693147180559945309f;
// The fewest query rows a decode CTA takes (mma.sync m16); the in-kernel merge keeps one
// MergeCounters per (request, KV head, row tile) of at least this many rows.
constexpr int kMinRowsPerCta = 16;
// The split workspace's output rows come in groups of this many (decode_common.cuh,
// split_out_offset): o_accum holds ceil(rows / 8)·8 rows per (slot, KV head).
constexpr int kSplitRowGroup = 8;

// Flags of ErrorRecord::flags.
enum ErrorFlag : int {
    kErrorSeqlen = 1,       // a sequence length outside [0, capacity]
    kErrorBlockId = 2,      // a block id of a page in use outside [0, num_blocks)
    kErrorSharedMemory = 4, // a kernel was launched with less dynamic shared memory than it needs
    kErrorMerge = 8         // an in-kernel merge gave up waiting for the pieces of a split request
};

#define FMLA_DECODE_CONSTANTS_FIELDS(X) \
    X(int, block_n)                     \
    X(int, fixed_overhead_blocks)       \
    X(int, head_dim_v)                  \
    X(int, max_head_dim)                \
    X(int, error_seqlen)                \
    X(int, error_block_id)              \
    X(int, error_shared_memory)         \
    X(int, error_merge)                 \
    X(int, min_rows_per_cta)            \
    X(int, split_row_group)             \
    X(int, elem_bf16)                   \
    X(int, elem_fp16)                   \
    X(int, abi_version)                 \
    X(int, pad)
FMLA_ABI_STRUCT(DecodeConstants, FMLA_DECODE_CONSTANTS_FIELDS);

constexpr DecodeConstants kDecodeConstants = {kBlockN,      kFixedOverheadBlocks, kHeadDimV,   kMaxHeadDim,
                                              kErrorSeqlen, kErrorBlockId,        kErrorSharedMemory, kErrorMerge,
                                              kMinRowsPerCta, kSplitRowGroup, kElemBf16,          kElemFp16,   kAbiVersion, 0};

// ---- fill.cu -----------------------------------------------------------------------------

#define FMLA_FILL_PARAMS_FIELDS(X) \
    X(u64, dst)   /* u32* destination */ \
    X(u64, count) /* number of 32-bit words */ \
    X(u32, value) /* the pattern */ \
    X(u32, pad)
FMLA_ABI_STRUCT(FillParams, FMLA_FILL_PARAMS_FIELDS);
static_assert(sizeof(FillParams) == 24, "FillParams is 24 bytes");

// ---- records the decode kernels share through global memory -------------------------------

// One part of the schedule (one CTA's share along grid.z), 8 × int32; FlashMla.Mla.DecodePart.
#define FMLA_DECODE_PART_FIELDS(X)                                          \
    X(int, begin_request)          /* == batch when the part has no work */ \
    X(int, end_request)            /* inclusive */                          \
    X(int, begin_block)            /* inclusive, within begin_request */    \
    X(int, end_block)              /* exclusive, within end_request */      \
    X(int, begin_split)            /* split slot of the first piece, within its request */ \
    X(int, first_request_is_split) /* the first request's piece is one of several */ \
    X(int, last_request_is_split)  /* the last request's piece is one of several */ \
    X(int, padding)
FMLA_ABI_STRUCT(DecodePart, FMLA_DECODE_PART_FIELDS);
static_assert(sizeof(DecodePart) == 32, "DecodePart is 8 x int32");

// Error record of guarded inputs, int32[4]. The host initialises it to {0, INT_MAX, INT_MAX, 0};
// kernels set flags with atomicOr and the lowest offending request with atomicMin.
#define FMLA_ERROR_RECORD_FIELDS(X)                                                        \
    X(int, flags)              /* ErrorFlag bits */                                        \
    X(int, bad_seqlen_request) /* lowest request with a bad length (INT_MAX: none) */      \
    X(int, bad_block_request)  /* lowest request with a bad block id (INT_MAX: none) */    \
    X(int, shared_memory_needed) /* the largest dynamic shared memory a short launch needed */
FMLA_ABI_STRUCT(ErrorRecord, FMLA_ERROR_RECORD_FIELDS);
static_assert(sizeof(ErrorRecord) == 16, "ErrorRecord is 4 x int32");

// The arrival counters of one (request, KV head, row tile) for the in-kernel merge
// (split_merge.cuh). The host zeroes them once; the last CTA of each merge resets them.
#define FMLA_MERGE_COUNTERS_FIELDS(X) \
    X(int, arrived)                   \
    X(int, departed)
FMLA_ABI_STRUCT(MergeCounters, FMLA_MERGE_COUNTERS_FIELDS);
static_assert(sizeof(MergeCounters) == 8, "MergeCounters is 2 x int32");

// ---- decode_schedule.cu -------------------------------------------------------------------

#define FMLA_SCHEDULE_PARAMS_FIELDS(X)                  \
    X(u64, cache_seqlens) /* const int* [batch] */      \
    X(u64, parts)         /* DecodePart* [num_parts] */ \
    X(u64, num_splits)    /* int* [batch + 1] */        \
    X(u64, error)         /* ErrorRecord* */            \
    X(int, batch)                                       \
    X(int, num_parts)                                   \
    X(int, capacity) /* max_blocks_per_seq · page_block_size, in tokens */ \
    X(int, pad)
FMLA_ABI_STRUCT(ScheduleParams, FMLA_SCHEDULE_PARAMS_FIELDS);
static_assert(sizeof(ScheduleParams) == 48, "ScheduleParams is 48 bytes");

// ---- split-KV decode kernels (every path) ---------------------------------------------------

// Query row r of KV head kv_head is query token r / group, query head kv_head·group + r % group.
#define FMLA_DECODE_PARAMS_FIELDS(X)                                        \
    X(u64, q)                                                               \
    X(u64, k_cache)                                                         \
    X(u64, block_table)                                                     \
    X(u64, cache_seqlens)                                                   \
    X(u64, output)                                                          \
    X(u64, lse)                                                             \
    X(u64, o_accum)   /* float [slots, h_kv, rows rounded up to 8, 512], split_out_offset */ \
    X(u64, lse_accum) /* float [slots, h_kv, rows], log2 domain */          \
    X(u64, parts)                                                           \
    X(u64, num_splits)                                                      \
    X(u64, error)                                                           \
    X(u64, merge)     /* MergeCounters* [batch, h_kv, row tiles]; 0: decode_combine.cu merges */ \
    X(i64, q_batch_stride)                                                  \
    X(i64, q_seq_stride)                                                    \
    X(i64, q_head_stride)                                                   \
    X(i64, k_block_stride)                                                  \
    X(i64, k_row_stride)                                                    \
    X(i64, k_head_stride)                                                   \
    X(i64, bt_batch_stride)                                                 \
    X(i64, o_batch_stride)                                                  \
    X(i64, o_seq_stride)                                                    \
    X(i64, o_head_stride)                                                   \
    X(i64, lse_batch_stride)                                                \
    X(i64, lse_head_stride) /* the LSE's seq stride is 1 */                 \
    X(int, batch)                                                           \
    X(int, s_q)                                                             \
    X(int, h_q)                                                             \
    X(int, h_kv)                                                            \
    X(int, group) /* h_q / h_kv */                                          \
    X(int, rows)  /* s_q · group */                                         \
    X(int, head_dim) /* 576 or 512 (QK dims); V dims = 512 */               \
    X(int, page_block_size)                                                 \
    X(int, num_blocks)                                                      \
    X(int, max_blocks_per_seq)                                              \
    X(int, causal)                                                          \
    X(int, num_parts)                                                       \
    X(float, scale_log2) /* softmax_scale · log2(e) */                      \
    X(int, pad)
FMLA_ABI_STRUCT(DecodeParams, FMLA_DECODE_PARAMS_FIELDS);
static_assert(sizeof(DecodeParams) == 248, "DecodeParams: 12 pointers, 12 strides, 14 x 32-bit");
static_assert(__builtin_offsetof(DecodeParams, q_batch_stride) == 96, "strides follow the 12 pointers");
static_assert(__builtin_offsetof(DecodeParams, batch) == 192, "32-bit fields follow the 12 strides");

// ---- decode_sm90.cu (the Hopper path) -------------------------------------------------------

// A CUtensorMap (TMA descriptor): 128 opaque bytes, encoded on the host, 64-byte aligned (so is
// every struct holding one, which makes it a `.param .align 64` kernel parameter).
struct alignas(64) TensorMapBytes {
    u8 bytes[128];
};

// DecodeParams, then the K cache's tensor map: 4-D (column, slot in page, KV head, block), box
// 64 × 64 × 1 × 1, SWIZZLE_128B. The kernel reads the map in place in the parameter space, or
// from global memory when k_map_global is not 0.
#define FMLA_DECODE_PARAMS_SM90_FIELDS(X) \
    X(DecodeParams, d)                    \
    X(u64, k_map_global)                  \
    X(TensorMapBytes, k_map)
FMLA_ABI_STRUCT(DecodeParamsSm90, FMLA_DECODE_PARAMS_SM90_FIELDS);
static_assert(sizeof(DecodeParamsSm90) == 384 && __builtin_offsetof(DecodeParamsSm90, k_map) == 256,
              "DecodeParamsSm90: DecodeParams, one u64, the tensor map at byte 256");

// ---- decode_combine.cu ----------------------------------------------------------------------

#define FMLA_COMBINE_PARAMS_FIELDS(X)     \
    X(u64, o_accum)                       \
    X(u64, lse_accum)                     \
    X(u64, num_splits)                    \
    X(u64, output)                        \
    X(u64, lse)                           \
    X(i64, o_batch_stride)                \
    X(i64, o_seq_stride)                  \
    X(i64, o_head_stride)                 \
    X(i64, lse_batch_stride)              \
    X(i64, lse_head_stride)               \
    X(int, batch)                         \
    X(int, s_q)                           \
    X(int, h_q)                           \
    X(int, h_kv)                          \
    X(int, group)                         \
    X(int, rows)                          \
    X(int, num_parts) /* slots = batch + num_parts */ \
    X(int, pad)
FMLA_ABI_STRUCT(CombineParams, FMLA_COMBINE_PARAMS_FIELDS);
static_assert(sizeof(CombineParams) == 112, "CombineParams: 5 pointers, 5 strides, 8 x 32-bit");
static_assert(__builtin_offsetof(CombineParams, batch) == 80, "32-bit fields follow the 5 strides");

// ---- kv_cache_append.cu (writing new tokens into the paged cache) ------------------------------

// A token's row is its latent vector: columns [0, 512) are the compressed KV (the values), the
// rest [512, head_dim) the RoPE key. Slot s of the cache is row s % page_block_size of block
// s / page_block_size; slot -1 is padding.
constexpr int kRopeDim = kMaxHeadDim - kHeadDimV;
constexpr int kPaddingSlot = -1;
// Flag of KvAppendErrorRecord::flags: a slot outside [-1, num_blocks · page_block_size). The value
// is MlaInputError.SlotOutOfRange, past the decode's flags so that the two never mix.
constexpr int kErrorSlot = 16;
static_assert((kErrorSlot & (kErrorSeqlen | kErrorBlockId | kErrorSharedMemory | kErrorMerge)) == 0,
              "the slot flag is a bit of its own");

#define FMLA_KV_APPEND_CONSTANTS_FIELDS(X) \
    X(int, nope_dim)                       \
    X(int, rope_dim)                       \
    X(int, padding_slot)                   \
    X(int, error_slot)
FMLA_ABI_STRUCT(KvAppendConstants, FMLA_KV_APPEND_CONSTANTS_FIELDS);
constexpr KvAppendConstants kKvAppendConstants = {kHeadDimV, kRopeDim, kPaddingSlot, kErrorSlot};

// Source rows come in two pieces: columns [0, 512) at `nope`, columns [512, head_dim) at `rope`
// (for a [n, (h_kv,) head_dim] latent, rope = nope + 512 elements and the strides are equal).
// Strides are in elements; the cache's last dimension and the sources' rows are contiguous.
#define FMLA_KV_APPEND_PARAMS_FIELDS(X)                                          \
    X(u64, nope)          /* const T* [n, h_kv, >= 512] */                       \
    X(u64, rope)          /* const T* [n, h_kv, head_dim - 512] (unused at 512) */ \
    X(u64, slot_mapping)  /* const int* [n] */                                   \
    X(u64, k_cache)       /* T* [num_blocks, page_block_size, h_kv, head_dim] */ \
    X(u64, error)         /* KvAppendErrorRecord* */                             \
    X(i64, nope_token_stride)                                                    \
    X(i64, nope_head_stride)                                                     \
    X(i64, rope_token_stride)                                                    \
    X(i64, rope_head_stride)                                                     \
    X(i64, slot_stride)                                                          \
    X(i64, k_block_stride)                                                       \
    X(i64, k_row_stride)                                                         \
    X(i64, k_head_stride)                                                        \
    X(int, num_tokens)                                                           \
    X(int, h_kv)                                                                 \
    X(int, head_dim)      /* 576 or 512 */                                       \
    X(int, page_block_size)                                                      \
    X(int, num_blocks)                                                           \
    X(int, pad)
FMLA_ABI_STRUCT(KvAppendParams, FMLA_KV_APPEND_PARAMS_FIELDS);
static_assert(sizeof(KvAppendParams) == 128, "KvAppendParams: 5 pointers, 8 strides, 6 x 32-bit");
static_assert(__builtin_offsetof(KvAppendParams, num_tokens) == 104, "32-bit fields follow the 8 strides");

// The append's error record. The host initialises it to {~0, 0, 0}; a kernel that meets a bad
// slot sets the flag, counts the token and keeps the lowest offending token with its slot.
#define FMLA_KV_APPEND_ERROR_RECORD_FIELDS(X)                                                  \
    X(u64, first_bad) /* (token << 32) | (u32)slot of the lowest bad token; ~0: none */       \
    X(int, flags)     /* kErrorSlot */                                                         \
    X(int, bad_tokens) /* tokens with a bad slot */
FMLA_ABI_STRUCT(KvAppendErrorRecord, FMLA_KV_APPEND_ERROR_RECORD_FIELDS);
static_assert(sizeof(KvAppendErrorRecord) == 16, "KvAppendErrorRecord is 16 bytes");

}  // namespace fmla

// Every module says this once (at global scope): it exports the layout of KernelDesc, through
// which the host reads the module's descriptors, and the shared constants (their layout and
// their values, `fmla_decode_constants`), which the tests compare with the C# side.
#define FMLA_MODULE_ABI()                                                                                   \
    FMLA_EXPORT_ABI(KernelDesc);                                                                            \
    FMLA_EXPORT_ABI(DecodeConstants);                                                                       \
    extern "C" __attribute__((device)) const fmla::DecodeConstants fmla_decode_constants = fmla::kDecodeConstants
