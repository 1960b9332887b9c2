// targets: sm_80 sm_90a
// decode_schedule.cu: mla_decode_schedule splits a batch's decode work over `num_parts` CTAs.
//
// Runs on the device so that a decode step needs no host round-trip and can be captured in a
// CUDA graph. Schedule: one warp. All 32 lanes load the sequence lengths (coalesced), turn
// them into block counts in shared memory (dynamic, 4·batch bytes) and sum the costs with a
// warp reduction; lane 0 then walks the requests in order and fills the parts greedily, writing
// each part record and the split-count prefix sum straight to global memory.
//
// Cost of a request: max(ceil(len/64), 1) blocks + kFixedOverheadBlocks. A part that ends at a
// request boundary records end_block = ceil(len/64) of that request (0 for an empty one). Budget of a part:
// ceil(total / num_parts) + kFixedOverheadBlocks. A part takes whole requests while the budget
// covers them (with their overhead); otherwise it takes (budget − overhead) blocks of the
// current request, if that is positive, and ends. Parts left without work get
// begin_request = batch.
#include "decode_common.cuh"

namespace fmla {
constexpr int kScheduleThreads = kWarpSize;
// Dynamic shared memory: the block count of every request.
constexpr int kScheduleSmemPerRequest = static_cast<int>(sizeof(int));
extern FMLA_SHARED int schedule_blocks[];  // [batch]
}  // namespace fmla

FMLA_MODULE_ABI();
FMLA_EXPORT_ABI(ScheduleParams);
FMLA_EXPORT_ABI(DecodePart);
FMLA_EXPORT_ABI(ErrorRecord);

FMLA_KERNEL(mla_decode_schedule, ScheduleParams,
            fmla::kernel_desc(fmla::kScheduleThreads).smem(0, fmla::kScheduleSmemPerRequest)) {
    using namespace fmla;
    const int* seqlens = reinterpret_cast<const int*>(p.cache_seqlens);
    DecodePart* parts = reinterpret_cast<DecodePart*>(p.parts);
    int* num_splits = reinterpret_cast<int*>(p.num_splits);
    ErrorRecord* error = reinterpret_cast<ErrorRecord*>(p.error);
    const int lane = lane_idx();
    if (!has_shared_memory(error, p.batch * kScheduleSmemPerRequest)) return;

    int total = 0;
    for (int i = lane; i < p.batch; i += kWarpSize) {
        int len = guarded_seqlen(seqlens, i, p.capacity, error, true);
        int blocks = blocks_of(len);
        schedule_blocks[i] = blocks;
        // An empty request still costs one (zero-length) block.
        total += (blocks > 0 ? blocks : 1) + kFixedOverheadBlocks;
    }
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) total += shfl_xor(total, m);
    asm volatile("bar.warp.sync 0xffffffff;" ::: "memory");
    if (lane != 0) return;

    const int payload = (total + p.num_parts - 1) / p.num_parts + kFixedOverheadBlocks;
    int req = 0, block = 0, split = 0, splits_so_far = 0;
    num_splits[0] = 0;
    for (int part = 0; part < p.num_parts; ++part) {
        DecodePart rec;
        rec.begin_request = req;
        rec.begin_block = block;
        rec.begin_split = split;
        rec.first_request_is_split = block > 0 ? 1 : 0;
        rec.padding = 0;
        int remain = payload;
        while (req < p.batch) {
            int blocks = schedule_blocks[req];
            int left = (blocks > 0 ? blocks : 1) - block;
            if (remain >= left + kFixedOverheadBlocks) {
                splits_so_far += split + 1;
                num_splits[req + 1] = splits_so_far;
                remain -= left + kFixedOverheadBlocks;
                ++req;
                block = 0;
                split = 0;
            } else {
                if (remain - kFixedOverheadBlocks > 0) {
                    block += remain - kFixedOverheadBlocks;
                    ++split;
                }
                break;
            }
        }
        if (block > 0) {
            rec.end_request = req;
            rec.end_block = block;
            rec.last_request_is_split = 1;
        } else {
            rec.end_request = req - 1;
            rec.end_block = req > 0 ? schedule_blocks[req - 1] : 0;
            rec.last_request_is_split = 0;
        }
        if (rec.begin_request == rec.end_request) {
            int s = rec.first_request_is_split | rec.last_request_is_split;
            rec.first_request_is_split = s;
            rec.last_request_is_split = s;
        }
        parts[part] = rec;
    }
}
