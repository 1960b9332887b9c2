// targets: sm_80 sm_90a
// kv_cache_append.cu: writes n new tokens' latent vectors into the paged KV cache through a
// device-resident slot mapping (slot = block id · page_block_size + offset; -1: padding).
//
// Schedule: one row = one (token, KV head) pair, head_dim · 2 bytes (1,152 at 576: 72 vectors of
// 16 bytes). A CTA of 256 threads takes 32 consecutive rows, 8 threads per row; thread j of a
// row moves vectors j, j + 8, …, so every 8 threads cover 128 contiguous bytes of source and of
// destination per step. Each thread issues all its loads (9 at 576) before its stores. Grid:
// ceil(n · h_kv / 32) CTAs, so n ≤ 128 is one launch of at most 4 CTAs, and n = 131,072 gives
// 4,096 CTAs, enough to keep every SM's memory pipe busy. No shared memory, no barriers.
//
// Safety: a row whose slot is outside [0, num_blocks · page_block_size) is not written; its
// token's first thread records it (flag, count, lowest token with its slot) in the error record,
// which the host raises at the synchronization point. Slot -1 rows are skipped silently.
// Element types: any 2-byte type (bf16, fp16); the rows are copied bit for bit.
#include "decode_abi.cuh"
#include "global_io.cuh"

FMLA_MODULE_ABI();
FMLA_EXPORT_ABI(KvAppendParams);
FMLA_EXPORT_ABI(KvAppendErrorRecord);
FMLA_EXPORT_ABI(KvAppendConstants);
extern "C" __attribute__((device)) const fmla::KvAppendConstants fmla_kv_append_constants = fmla::kKvAppendConstants;

namespace fmla {

constexpr int kAppendThreads = 256;
constexpr int kAppendThreadsPerRow = 8;
constexpr int kAppendRowsPerCta = kAppendThreads / kAppendThreadsPerRow;
constexpr int kAppendElementBytes = 2;
constexpr int kAppendVecElements = kVecBytes / kAppendElementBytes;
// Vectors of the compressed-KV part and of a whole row at the largest head dimension.
constexpr int kNopeVecs = kHeadDimV / kAppendVecElements;
constexpr int kMaxRowVecs = kMaxHeadDim / kAppendVecElements;
constexpr int kVecsPerThread = (kMaxRowVecs + kAppendThreadsPerRow - 1) / kAppendThreadsPerRow;
static_assert(kAppendThreads % kAppendThreadsPerRow == 0 && kWarpSize % kAppendThreadsPerRow == 0,
              "a warp holds whole rows");
static_assert(kHeadDimV % kAppendVecElements == 0 && kRopeDim % kAppendVecElements == 0,
              "the compressed KV and the RoPE key are whole 16-byte vectors");
static_assert(kVecsPerThread == 9, "a 576-wide row is 72 vectors, 9 per thread");

// Records a token whose slot is outside the cache.
FMLA_DEVICE void report_bad_slot(const KvAppendParams& p, int token, int slot) {
    auto* record = reinterpret_cast<KvAppendErrorRecord*>(p.error);
    atomic_or_global(&record->flags, kErrorSlot);
    atomic_add_global(&record->bad_tokens, 1);
    atomic_min_global_u64(&record->first_bad, (static_cast<u64>(token) << 32) | static_cast<u32>(slot));
}

}  // namespace fmla

FMLA_KERNEL(mla_kv_cache_append, KvAppendParams, fmla::kernel_desc(fmla::kAppendThreads).rows(fmla::kAppendRowsPerCta)) {
    using namespace fmla;
    const int sub = thread_idx() % kAppendThreadsPerRow;
    const i64 row = static_cast<i64>(block_idx_x()) * kAppendRowsPerCta + thread_idx() / kAppendThreadsPerRow;
    const int h_kv = p.h_kv;
    if (row >= static_cast<i64>(p.num_tokens) * h_kv) return;
    const int token = static_cast<int>(row / h_kv);
    const int head = static_cast<int>(row - static_cast<i64>(token) * h_kv);

    const int slot = reinterpret_cast<const int*>(p.slot_mapping)[token * p.slot_stride];
    if (slot == kPaddingSlot) return;
    const int page = p.page_block_size;
    if (slot < 0 || static_cast<i64>(slot) >= static_cast<i64>(p.num_blocks) * page) {
        if (head == 0 && sub == 0) report_bad_slot(p, token, slot);
        return;
    }

    const int block = slot / page;
    const int offset = slot - block * page;
    const u8* nope = reinterpret_cast<const u8*>(p.nope) +
                     (token * p.nope_token_stride + head * p.nope_head_stride) * kAppendElementBytes;
    const u8* rope = reinterpret_cast<const u8*>(p.rope) +
                     (token * p.rope_token_stride + head * p.rope_head_stride) * kAppendElementBytes;
    u8* dst = reinterpret_cast<u8*>(p.k_cache) +
              (block * p.k_block_stride + offset * p.k_row_stride + head * p.k_head_stride) * kAppendElementBytes;
    const int row_vecs = p.head_dim / kAppendVecElements;

    Vec16 v[kVecsPerThread];
#pragma unroll
    for (int i = 0; i < kVecsPerThread; ++i) {
        const int c = sub + i * kAppendThreadsPerRow;
        if (c < row_vecs) {
            v[i] = load16_stream(c < kNopeVecs ? nope + c * kVecBytes : rope + (c - kNopeVecs) * kVecBytes);
        }
    }
#pragma unroll
    for (int i = 0; i < kVecsPerThread; ++i) {
        const int c = sub + i * kAppendThreadsPerRow;
        if (c < row_vecs) store16(dst + c * kVecBytes, v[i]);
    }
}
