// targets: sm_90a
// micro_sm90.cu: microbenchmarks of the Hopper primitives the sm_90a decode path is built on.
// Not part of the library: scripts/build-micro.sh compiles it to bench/micro/build/, and
// bench/micro/micro.py runs it on an H100/H200.
//
//  micro_wgmma_n64 / _n128 / _n256: grid = one CTA per SM, 128·W consumer threads (W
//    warpgroups) plus, when `tma` is set, one extra warp that streams 64×64 TMA boxes (8 KB) into
//    its own ring of shared memory for the whole run. Each consumer warpgroup issues `iters`
//    groups of 4 wgmma (m64n64k16 SS, the QK shape, or m64n128k16 / m64n256k16 SS with B
//    MN-major, the PV shapes; n256 with at most 2 warpgroups) from a 64 KB shared region, keeping two groups in flight. Shows whether the tensor
//    cores run at full rate from shared memory and what concurrent TMA writes cost them.
//  micro_tma_paged: grid = `ctas`, 64 threads (warp 0 lane 0 produces, warp 1 lane 0 consumes).
//    Each CTA streams `blocks` 64-token blocks of a paged cache (9 boxes of 64×64 each, the
//    decode kernel's pattern) through a ring of `slots` 8 KB boxes, pages from a random table;
//    `share` CTAs in a row read the same pages (the h_q = 128 case: two row tiles per block).
#include "sm90/mbarrier.cuh"
#include "sm90/tma.cuh"
#include "sm90/warpgroup.cuh"
#include "sm90/wgmma.cuh"

namespace fmla::micro {
using namespace fmla::sm90;

struct WgmmaParams {
    u64 out;        // float [gridDim.x · threads]
    u64 stream_map; // 2-D tensor map (64 columns × rows) in global memory, used when tma != 0
    int iters;
    int tma;        // 1: one extra warp streams TMA boxes during the run
    int stream_rows;
    int pad;
};

struct PagedParams {
    u64 map;          // 4-D tensor map of the paged cache, in global memory
    u64 block_table;  // int [ctas / share][blocks]
    u64 out;          // int [ctas]
    int blocks, slots, share, pad;
};

extern FMLA_SHARED __attribute__((aligned(1024))) u8 micro_smem[];

FMLA_DEVICE u32 aligned_base() { return (smem_addr(micro_smem) + 1023) & ~1023u; }

// 64 KB operand region filled with small values; then the TMA ring (8 × 8 KB) and 8 barriers.
constexpr int kOperandBytes = 64 * 1024;
constexpr int kRingSlots = 8;

template <int N>
FMLA_DEVICE void wgmma_loop(const WgmmaParams& p, int consumers) {
    const u32 base = aligned_base();
    const int tid = thread_idx();
    for (int i = tid; i < kOperandBytes / 4; i += block_dim_x()) {
        const u32 h = static_cast<u32>(i) * 2654435761u;
        const u32 lo = 0x3c00u | ((h >> 8) & 0x7fu);   // bf16 ~ 0.0078 … 0.0156
        const u32 hi = 0x3c00u | ((h >> 16) & 0x7fu);
        st_shared_u32(base + 4 * i, lo | (hi << 16));
    }
    const u32 bars = base + kOperandBytes + kRingSlots * 8192;
    if (tid == 0) {
        for (int i = 0; i < kRingSlots; ++i) mbarrier_init(bars + 8 * i, 1);
        mbarrier_init_fence();
    }
    fence_proxy_async_shared();
    sync_threads();
    const int wg = tid / kWarpgroupThreads;
    if (wg >= consumers) {
        // The streaming warp.
        if (p.tma && lane_idx() == 0) {
            int row = static_cast<int>(block_idx_x()) * 64;
            const int total = p.iters / 4 + 8;
            for (int i = 0; i < total; ++i) {
                const int s = i % kRingSlots;
                if (i >= kRingSlots) mbarrier_wait(bars + 8 * s, ((i / kRingSlots) - 1) & 1);
                mbarrier_arrive_expect_tx(bars + 8 * s, 8192);
                tma_load_4d(base + kOperandBytes + 8192 * s, p.stream_map, bars + 8 * s, 0, row, 0, 0);
                row += 64 * grid_dim_x();
                if (row + 64 > p.stream_rows) row = static_cast<int>(block_idx_x()) * 64;
            }
        }
        return;
    }
    constexpr int kAcc = N / 2;
    float d[kAcc];
#pragma unroll
    for (int i = 0; i < kAcc; ++i) d[i] = 0.0f;
    const u32 a = base + 8192 * wg;      // distinct A per warpgroup
    const u32 b = base + 32768;          // B shared by all (4 boxes of 8 KB)
    wgmma_fence_operands(d);
    for (int it = 0; it < p.iters; ++it) {
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            if constexpr (N == 64) {
                wgmma_m64n64k16_ss<bf16>(d, desc_k_major_sw128(a + kk * 32), desc_k_major_sw128(b + kk * 32), 1);
            } else if constexpr (N == 128) {
                wgmma_m64n128k16_ss_tb<bf16>(d, desc_k_major_sw128(a + kk * 32), desc_mn_major_sw128(b + kk * 2048, 8192), 1);
            } else {
                wgmma_m64n256k16_ss_tb<bf16>(d, desc_k_major_sw128(a + kk * 32), desc_mn_major_sw128(b + kk * 2048, 8192), 1);
            }
        }
        wgmma_commit();
        wgmma_wait<1>();
    }
    wgmma_wait<0>();
    wgmma_fence_operands(d);
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < kAcc; ++i) sum += d[i];
    reinterpret_cast<float*>(p.out)[block_idx_x() * block_dim_x() + tid] = sum;
}

}  // namespace fmla::micro

extern "C" FMLA_GLOBAL FMLA_LAUNCH_BOUNDS(416, 1) void micro_wgmma_n64(const fmla::micro::WgmmaParams p) {
    fmla::micro::wgmma_loop<64>(p, (fmla::block_dim_x() / 128));
}

extern "C" FMLA_GLOBAL FMLA_LAUNCH_BOUNDS(416, 1) void micro_wgmma_n128(const fmla::micro::WgmmaParams p) {
    fmla::micro::wgmma_loop<128>(p, (fmla::block_dim_x() / 128));
}

// m64n256 needs about 154 registers: at most 2 warpgroups and the streaming warp.
extern "C" FMLA_GLOBAL FMLA_LAUNCH_BOUNDS(288, 1) void micro_wgmma_n256(const fmla::micro::WgmmaParams p) {
    fmla::micro::wgmma_loop<256>(p, (fmla::block_dim_x() / 128));
}

extern "C" FMLA_GLOBAL FMLA_LAUNCH_BOUNDS(64, 1) void micro_tma_paged(const fmla::micro::PagedParams p) {
    using namespace fmla;
    using namespace fmla::sm90;
    const u32 base = micro::aligned_base();
    const u32 full = base + p.slots * 8192;
    const u32 empty = full + 8 * p.slots;
    const int tid = thread_idx();
    if (tid == 0) {
        for (int i = 0; i < p.slots; ++i) {
            mbarrier_init(full + 8 * i, 1);
            mbarrier_init(empty + 8 * i, 1);
        }
        mbarrier_init_fence();
    }
    sync_threads();
    const int* table = reinterpret_cast<const int*>(p.block_table) + static_cast<i64>(block_idx_x() / p.share) * p.blocks;
    const int boxes = 9 * p.blocks;
    if (tid == 0) {
        prefetch_tensor_map(p.map);
        for (int i = 0; i < boxes; ++i) {
            const int s = i % p.slots;
            mbarrier_wait(empty + 8 * s, ((i / p.slots) & 1) ^ 1);
            mbarrier_arrive_expect_tx(full + 8 * s, 8192);
            tma_load_4d(base + 8192 * s, p.map, full + 8 * s, 64 * (i % 9), 0, 0, table[i / 9]);
        }
    } else if (tid == 32) {
        int sum = 0;
        for (int i = 0; i < boxes; ++i) {
            const int s = i % p.slots;
            mbarrier_wait(full + 8 * s, (i / p.slots) & 1);
            sum += static_cast<int>(ld_shared_f32(base + 8192 * s + 4 * (i & 63)) != 0.0f);
            mbarrier_arrive(empty + 8 * s);
        }
        reinterpret_cast<int*>(p.out)[block_idx_x()] = sum;
    }
}
