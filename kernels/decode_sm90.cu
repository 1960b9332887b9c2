// targets: sm_90a
// decode_sm90.cu: split-KV MLA decode for Hopper (sm_90a): TMA, wgmma and warp specialisation.
//
// Work: CTA (x, y, z) takes query rows [64x, 64x + 64) of KV head y (row r = query token
// r / group, query head y·group + r % group; rows past s_q·group are zero) and the pieces of the
// requests that schedule part z assigns it, exactly as decode_splitkv.cu: per piece it computes
// S = Q·Kᵀ over head_dim and O += softmax(S)·V over the first 512 columns, 64 keys at a time,
// with an online softmax in fp32 (log2 domain), then writes the final output and natural-log LSE
// (unsplit piece) or the fp32 partial and log2 LSE of split slot num_splits[request] + split.
//
// Threads: 512 = 4 warpgroups, one CTA per SM, registers re-split with setmaxnreg.
//  WG0  producer (40 registers). Warp 0: one lane walks the CTA's whole (piece, block) list and
//       keeps the K ring full across request boundaries: for each 64-key block it resolves the
//       page through the block table (a bad id is reported and read as zeros: the box falls
//       outside the tensor map) and issues one 64×64 TMA box per 64 columns (9 for d = 576), the
//       RoPE box first. Warps 1–3: load each piece's Q tile (cp.async; a warp takes a row at a
//       time, its lanes the row's chunks, each lane having worked out one row's address; rows
//       past s_q·group zero).
//  WG1  scores (136 registers): per block, S = Q·Kᵀ with wgmma m64n64k16 (both operands in
//       shared memory; box by box as the K boxes land), then the softmax: masks (length,
//       causal), running max and sums, and the hand-over of P (bf16/fp16, written with stmatrix
//       over the block's RoPE box, which its QK no longer needs), of the per-row rescale factor
//       and of the row sums to the output warpgroups; at a piece's end it writes the LSE.
//  WG2, WG3  output (168 registers each): WG2 owns output columns 0–255, WG3 256–511. Per block
//       each rescales its 64×256 fp32 accumulator (128 registers) and adds P·V with two wgmma
//       m64n128k16 per k-step (P and V in shared memory, V as the MN-major view of the K tile's
//       first 512 columns; one m64n256 instruction would need more registers than ptxas allows
//       an instruction under the 128-register entry cap of 512 threads), then releases its four
//       V boxes and its share of the P box. At a piece's end it divides by the row sums and
//       stores its half of the output.
//
// Shared memory (Smem below; 223,552 bytes with the 1024-byte alignment slack):
//  q      9 boxes of 64 rows × 64 columns, SW128     Q of the current piece
//  k      2 stages × 9 boxes                         K ring; block j uses stage j % 2; box 8
//                                                    (RoPE) holds the block's P after its QK
//  alpha  2 stages × 64 fp32                         per-row rescale factor of the stage's block
//  row_l  2 stages × 64 fp32                         row sums after the stage's block
//  barriers (mbarrier)
//    full[18], empty[18]  one pair per K box: TMA bytes landed / last reader done (V boxes 0–3
//                         by WG2, 4–7 by WG3, the P box by both)
//    p_full[2]            the stage's P, alpha and row sums written (128 WG1 arrivals)
//    q_full, q_empty      Q loaded (warps 1–3, one arrival each) / Q no longer read (WG1, after a piece's last QK)
// A partial last block: the rows past the length may hold anything (NaN): WG1 masks their
// scores, and WG2/WG3 zero those rows of their V boxes (then fence.proxy.async) before P·V.
#include "cp_async.cuh"
#include "decode_abi.cuh"
#include "decode_common.cuh"
#include "global_io.cuh"
#include "numeric.cuh"
#include "probe_timeline.cuh"
#include "sm90/mbarrier.cuh"
#include "sm90/tma.cuh"
#include "sm90/warpgroup.cuh"
#include "sm90/wgmma.cuh"
#include "split_merge.cuh"

namespace fmla {

namespace sm90dec {

using namespace fmla::sm90;

constexpr int kThreads = 512;
constexpr int kRows = 64;          // query rows per CTA
constexpr int kBoxCols = 64;       // columns per TMA box (128 bytes)
constexpr int kBoxBytes = 64 * kBoxCols * 2;
constexpr int kMaxBoxes = 9;       // 576 / 64
constexpr int kVBoxes = 8;         // 512 / 64
constexpr int kVBoxesPerWg = 4;    // output columns 256 per output warpgroup
static_assert(2 * kVBoxesPerWg == kVBoxes, "two output warpgroups cover the 512 V columns");
constexpr int kStages = 2;
constexpr int kQLoaders = 3;       // WG0 warps 1–3 load Q
static_assert(kMaxBoxes * kBoxCols == kMaxHeadDim && kVBoxes * kBoxCols == kHeadDimV, "boxes cover the head dims");

constexpr int kProducerRegs = 40;
constexpr int kScoreRegs = 136;
constexpr int kOutputRegs = 168;
// The in-kernel merge of split pieces (split_merge.cuh) runs on WG1–WG3, which meet at this named
// barrier (1 and 2 are the output warpgroups' own).
constexpr int kMergeBarrier = 3;
constexpr int kMergeThreads = 3 * 128;
static_assert(kProducerRegs + kScoreRegs + 2 * kOutputRegs <= 65536 / kWarpgroupThreads,
              "register split exceeds the register file");

struct Smem {
    static constexpr int q = 0;
    static constexpr int k = q + kMaxBoxes * kBoxBytes;
    static constexpr int alpha = k + kStages * kMaxBoxes * kBoxBytes;  // [stage][row]; the merge's scratch ends here
    static constexpr int row_l = alpha + kStages * kRows * 4;          // [stage][row]
    static constexpr int full = row_l + kStages * kRows * 4;
    static constexpr int empty = full + kStages * kMaxBoxes * 8;
    static constexpr int p_full = empty + kStages * kMaxBoxes * 8;     // [stage]
    static constexpr int q_full = p_full + kStages * 8;
    static constexpr int q_empty = q_full + 8;
    static constexpr int end = q_empty + 8;
    static constexpr int alignment = 1024;  // SW128 boxes need 1024-byte alignment
    static constexpr int bytes = end + alignment;
};
static_assert(Smem::k % 1024 == 0, "SW128 tiles must be 1024-byte aligned");
// P of block j (64 × 64 in q's dtype, SW128) is written over block j's RoPE box once its QK is
// done: a P buffer per stage, in memory the block holds anyway (box 8 is unused with d = 512).
constexpr int kPBox = kMaxBoxes - 1;
static_assert(64 * kBlockN * 2 == kBoxBytes, "P of a block fills one box");
static_assert(Smem::bytes <= 232448, "shared memory exceeds sm_90's 227 KB per block");

extern FMLA_SHARED __attribute__((aligned(1024))) u8 smem_raw[];

struct __attribute__((aligned(8))) float2v {
    float x, y;
};

// The box order within a block: the RoPE box (released first, by the score warpgroup) leads.
constexpr FMLA_DEVICE int box_at(int i, int boxes) { return boxes == kMaxBoxes ? (i == 0 ? kMaxBoxes - 1 : i - 1) : i; }

// Compile-time index lists (no standard library here): Seq<0, 1, …, N-1> = MakeSeq<N>::type.
template <int... I> struct Seq {};
template <int N, int... I> struct MakeSeq : MakeSeq<N - 1, N - 1, I...> {};
template <int... I> struct MakeSeq<0, I...> { using type = Seq<I...>; };

struct Cta {
    const DecodeParams& p;
    u32 base;  // 1024-aligned shared address of Smem
    int m_block, kv_head, part;
    int boxes;  // head_dim / 64

    FMLA_DEVICE u32 q_box(int t) const { return base + Smem::q + t * kBoxBytes; }
    FMLA_DEVICE u32 k_box(int stage, int t) const { return base + Smem::k + (stage * kMaxBoxes + t) * kBoxBytes; }
    FMLA_DEVICE u32 full_bar(int stage, int t) const { return base + Smem::full + (stage * kMaxBoxes + t) * 8; }
    FMLA_DEVICE u32 empty_bar(int stage, int t) const { return base + Smem::empty + (stage * kMaxBoxes + t) * 8; }
    FMLA_DEVICE u32 bar(int off) const { return base + off; }
    FMLA_DEVICE u32 p_tile(int stage) const { return k_box(stage, kPBox); }
    FMLA_DEVICE u32 alpha(int stage, int row) const { return base + Smem::alpha + (stage * kRows + row) * 4; }
    FMLA_DEVICE u32 row_l(int stage, int row) const { return base + Smem::row_l + (stage * kRows + row) * 4; }
    FMLA_DEVICE u32 p_full(int stage) const { return base + Smem::p_full + stage * 8; }

    // Tensor row r (0..63) of the CTA → global query row; valid when < p.rows.
    FMLA_DEVICE int global_row(int r) const { return m_block * kRows + r; }
};

// ---------------------------------------------------------------------------------------------
// WG0 warp 0: the K ring.
FMLA_DEVICE void produce_k(const Cta& c, u64 k_map) {
    const DecodeParams& p = c.p;
    prefetch_tensor_map(k_map);
    int j = 0;
    ErrorRecord* error = reinterpret_cast<ErrorRecord*>(p.error);
    for_each_piece(p, c.part, [&](const DecodePiece& pc) FMLA_INLINE_LAMBDA {
        FMLA_PROBE_STAMP(j == 0, kStampFirstPiece);
        const int* bt_row = reinterpret_cast<const int*>(p.block_table) + static_cast<i64>(pc.request) * p.bt_batch_stride;
        for (int blk = pc.tile_begin; blk < pc.tile_end; ++blk, ++j) {
            const int token0 = blk * kBlockN;
            const int page = token0 / p.page_block_size;
            const int in_page = token0 - page * p.page_block_size;
            int block_id = bt_row[page];
            if (block_id < 0 || block_id >= p.num_blocks) {
                report_bad_block(error, pc.request);
                block_id = p.num_blocks;  // outside the tensor map: the box reads as zeros
            }
            FMLA_PROBE_STAMP(j == 0, kStampFirstBlockId);
            const int stage = j & 1;
            const u32 parity = ((j >> 1) & 1) ^ 1;
            for (int i = 0; i < c.boxes; ++i) {
                const int t = box_at(i, c.boxes);
                mbarrier_wait(c.empty_bar(stage, t), parity);
#ifdef FMLA_SM90_PROBE_NO_LOADS  // timing probe: the ring cycles without moving K
                (void)in_page;
                mbarrier_arrive(c.full_bar(stage, t));
#else
                mbarrier_arrive_expect_tx(c.full_bar(stage, t), kBoxBytes);
                tma_load_4d(c.k_box(stage, t), k_map, c.full_bar(stage, t), t * kBoxCols, in_page, c.kv_head, block_id);
#endif
            }
            FMLA_PROBE_STAMP(j == 0, kStampFirstKIssued);
        }
    });
    FMLA_PROBE_STAMP(true, kStampAllKIssued);
}

// WG0 warps 1–3: Q of each non-empty piece. Loader w takes rows w, w + 3, …; lane l works out the
// global address of the loader's row l (before the piece may overwrite Q, so that for a later piece
// it overlaps the previous one's work), and the row loop broadcasts it while the lanes copy the
// row's 16-byte chunks: lane l takes chunks l, l + 32, …, whose swizzled places differ from its
// first by whole boxes. Rows past s_q·group are the same for every piece: they are zeroed once,
// with plain stores. (One lane computing every row's address, and a chunk loop that recomputed
// each chunk's place, took about 2.6 µs from the walk to the last copy issued.)
constexpr int kRowsPerQLoader = (kRows + kQLoaders - 1) / kQLoaders;
static_assert(kRowsPerQLoader <= kWarpSize, "a lane works out one row's address");
static_assert(kWarpSize % 8 == 0, "chunk l + 32t sits where chunk l does, 4t boxes further (8 chunks a box)");
template <int kBoxes>
FMLA_DEVICE void produce_q(const Cta& c, int loader, int lane) {
    constexpr int kChunks = kBoxes * (kBoxCols / 8);  // 16-byte chunks of a row
    constexpr int kSteps = (kChunks + kWarpSize - 1) / kWarpSize;
    constexpr int kBoxesPerStep = kWarpSize / 8;
    const DecodeParams& p = c.p;
    int count = 0;
    for_each_piece<true>(p, c.part, [&](const DecodePiece& pc) FMLA_INLINE_LAMBDA {
        if (pc.tile_end <= pc.tile_begin) return;
        const int my_row = loader + kQLoaders * lane;
        const int my_r = c.global_row(my_row);
        u64 my_src = reinterpret_cast<u64>(p.q);
        if (my_row < kRows && my_r < p.rows) my_src += 2 * static_cast<u64>(q_offset(p, pc.request, query_row(my_r, c.kv_head, p.group)));
        mbarrier_wait(c.bar(Smem::q_empty), (count & 1) ^ 1);
        const u32 lane_box = (lane >> 3) * kBoxBytes;
        for (int row = loader, n = 0; row < kRows; row += kQLoaders, ++n) {
            const u8* src = reinterpret_cast<const u8*>(shfl_idx(my_src, n)) + 16 * lane;  // chunk `lane` of row `row`
            const u32 dst = c.q_box(0) + row * 128 + lane_box + (((lane & 7) ^ (row & 7)) << 4);
            if (c.global_row(row) < p.rows) {
#pragma unroll
                for (int t = 0; t < kSteps; ++t) {
                    if (lane + kWarpSize * t < kChunks) cp_async_16(dst + t * kBoxesPerStep * kBoxBytes, src + t * kWarpSize * 16, true);
                }
            } else if (count == 0) {
#pragma unroll
                for (int t = 0; t < kSteps; ++t) {
                    if (lane + kWarpSize * t < kChunks) st_shared_v4(dst + t * kBoxesPerStep * kBoxBytes, 0u, 0u, 0u, 0u);
                }
            }
        }
        cp_async_commit();
        FMLA_PROBE_STAMP(lane == 0 && loader == 0 && count == 0, kStampQIssued);
        cp_async_wait<0>();
        fence_proxy_async_shared();
        asm volatile("bar.warp.sync 0xffffffff;" ::: "memory");
        if (lane == 0) mbarrier_arrive(c.bar(Smem::q_full));
        FMLA_PROBE_STAMP(lane == 0 && loader == 0, kStampQLanded);
        ++count;
    });
}

// ---------------------------------------------------------------------------------------------
// WG1: scores and softmax.
template <typename T, int kBoxes>
struct Scores {
    const Cta& c;
    int warp, lane;
    int j;        // blocks handed over so far (all pieces)
    int q_count;  // pieces whose Q was used
    float s[32];
    float m_run[2], l_run[2];
    float limit[2];

    FMLA_DEVICE int row_of(int h) const { return 16 * warp + (lane >> 2) + 8 * h; }

    // One box of S += Q·Kᵀ: wait for the K box, then its four k16 steps (the first box of a
    // block starts the accumulation).
    template <int I>
    FMLA_DEVICE void qk_box(float (&acc)[32], u64 dq, u64 dk, int stage, u32 parity) const {
        constexpr int t = box_at(I, kBoxes);
        mbarrier_wait(c.full_bar(stage, t), parity);
#ifndef FMLA_SM90_PROBE_NO_MATH
        wgmma_fence();
        wgmma_m64n64k16_ss<T, t * kBoxBytes + 0, t * kBoxBytes + 0>(acc, dq, dk, I != 0);
        wgmma_m64n64k16_ss<T, t * kBoxBytes + 32, t * kBoxBytes + 32>(acc, dq, dk, 1);
        wgmma_m64n64k16_ss<T, t * kBoxBytes + 64, t * kBoxBytes + 64>(acc, dq, dk, 1);
        wgmma_m64n64k16_ss<T, t * kBoxBytes + 96, t * kBoxBytes + 96>(acc, dq, dk, 1);
#else
        (void)acc, (void)dq, (void)dk;
#endif
    }

    template <int... I>
    FMLA_DEVICE void qk_boxes(float (&acc)[32], u64 dq, u64 dk, int stage, u32 parity, Seq<I...>) const {
        (qk_box<I>(acc, dq, dk, stage, parity), ...);
    }

    // Issues S = Q·Kᵀ of block jj (all head_dim columns) into acc, as one commit group.
    FMLA_DEVICE void issue_qk(float (&acc)[32], int jj) const {
        const int stage = jj & 1;
        const u32 parity = (jj >> 1) & 1;
        wgmma_fence_operands(acc);
        qk_boxes(acc, desc_k_major_sw128(c.q_box(0)), desc_k_major_sw128(c.k_box(stage, 0)), stage, parity,
                 typename MakeSeq<kBoxes>::type{});
        wgmma_commit();
    }

    // Softmax of block `blk` (scores in s, overwritten), hand-over of P and alpha (and the row
    // sums).
    FMLA_DEVICE void finish_block(float (&s)[32], const DecodePiece& pc, int blk, bool last) {
        const DecodeParams& p = c.p;
        const int key_base = blk * kBlockN + 2 * (lane & 3);
        float mx[2] = {-inf_f(), -inf_f()};
        float (&v)[32] = s;  // the scores become log2-domain logits in place
#pragma unroll
        for (int n = 0; n < 8; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int h = e >> 1;
                const float key = static_cast<float>(key_base + 8 * n + (e & 1));
                v[4 * n + e] = key < limit[h] ? s[4 * n + e] * p.scale_log2 : -inf_f();
                mx[h] = fmax_(mx[h], v[4 * n + e]);
            }
        }
        float alpha[2], m_use[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            mx[h] = fmax_(mx[h], shfl_xor(mx[h], 1));
            mx[h] = fmax_(mx[h], shfl_xor(mx[h], 2));
            const float m_new = fmax_(m_run[h], mx[h]);
            m_use[h] = m_new == -inf_f() ? 0.0f : m_new;
            alpha[h] = exp2_approx(m_run[h] - m_use[h]);
            m_run[h] = m_new;
            l_run[h] *= alpha[h];
        }
        u32 packed[16];
#pragma unroll
        for (int n = 0; n < 8; ++n) {
            const float p0 = exp2_approx(v[4 * n + 0] - m_use[0]);
            const float p1 = exp2_approx(v[4 * n + 1] - m_use[0]);
            const float p2 = exp2_approx(v[4 * n + 2] - m_use[1]);
            const float p3 = exp2_approx(v[4 * n + 3] - m_use[1]);
            l_run[0] += p0 + p1;
            l_run[1] += p2 + p3;
            packed[2 * n + 0] = ElemOps<T>::pack2(p0, p1);
            packed[2 * n + 1] = ElemOps<T>::pack2(p2, p3);
        }
        float l_row[2] = {l_run[0], l_run[1]};
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            l_row[h] += shfl_xor(l_row[h], 1);
            l_row[h] += shfl_xor(l_row[h], 2);
        }
        // P, alpha and the row sums of block j go to its stage (the stage's previous block was
        // read by the output warpgroups before its K boxes were reloaded).
        const int stage = j & 1;
        if ((lane & 3) == 0) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                st_shared_f32(c.alpha(stage, row_of(h)), alpha[h]);
                st_shared_f32(c.row_l(stage, row_of(h)), l_row[h]);
            }
        }
        const u32 p_base = c.p_tile(stage);
        const int mat = lane >> 3;
#pragma unroll
        for (int n = 0; n < 8; n += 2) {
            const int row = 16 * warp + 8 * (mat & 1) + (lane & 7);
            const int chunk = n + (mat >> 1);
            stmatrix_x4(p_base + row * 128 + ((chunk ^ (row & 7)) << 4), packed[2 * n], packed[2 * n + 1],
                        packed[2 * n + 2], packed[2 * n + 3]);
        }
        fence_proxy_async_shared();
        mbarrier_arrive(c.p_full(stage));
        ++j;
        if (last && (lane & 3) == 0) write_lse(pc, l_row);
    }

    FMLA_DEVICE void write_lse(const DecodePiece& pc, const float (&l_row)[2]) const {
        const DecodeParams& p = c.p;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = c.global_row(row_of(h));
            if (r >= p.rows) continue;
            const float l = l_row[h];
            const float lse2 = l > 0.0f ? m_run[h] + log2_approx(l) : -inf_f();
            if (pc.split) {
                reinterpret_cast<float*>(p.lse_accum)[split_row(pc.slot, c.kv_head, p.h_kv, p.rows, r)] = lse2;
            } else {
                reinterpret_cast<float*>(p.lse)[lse_offset(p, pc.request, query_row(r, c.kv_head, p.group))] =
                    l > 0.0f ? lse2 * kLn2 : inf_f();
            }
        }
    }

    FMLA_DEVICE void run() {
        const DecodeParams& p = c.p;
        j = 0;
        q_count = 0;
        for_each_piece<true>(p, c.part, [&](const DecodePiece& pc) FMLA_INLINE_LAMBDA {
            const int n = pc.tile_end - pc.tile_begin;
            m_run[0] = m_run[1] = -inf_f();
            l_run[0] = l_run[1] = 0.0f;
            if (n <= 0) {
                if ((lane & 3) == 0) {
                    const float zero[2] = {0.0f, 0.0f};
                    write_lse(pc, zero);
                }
                return;
            }
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = c.global_row(row_of(h));
                int visible = pc.seqlen;
                if (p.causal) visible = pc.seqlen - p.s_q + r / p.group + 1;
                limit[h] = static_cast<float>(r < p.rows ? visible : 0);
            }
            mbarrier_wait(c.bar(Smem::q_full), q_count & 1);
            ++q_count;
            FMLA_PROBE_STAMP(thread_idx() == kWarpgroupThreads, kStampQSeen);
            // Block by block: its QK (waiting for each K box), then its softmax. The next block's
            // QK is not issued first: with two K stages that would hold this block's P back
            // until the next block has arrived, and so expose a load latency per block.
            const bool leader = thread_idx() == kWarpgroupThreads;
            for (int b = 0; b < n; ++b) {
                issue_qk(s, j);
                wgmma_wait<0>();
                wgmma_fence_operands(s);
                mbarrier_arrive_if(c.bar(Smem::q_empty), leader && b + 1 == n);
                FMLA_PROBE_STAMP(leader && b == 0, kStampFirstQkDone);
                finish_block(s, pc, pc.tile_begin + b, b + 1 == n);
                FMLA_PROBE_STAMP(leader && b == 0, kStampFirstPOut);
                FMLA_PROBE_STAMP(leader && b + 1 == n, kStampLastPOut);
            }
        });
    }
};

// ---------------------------------------------------------------------------------------------
// WG2 / WG3: the output halves.
template <typename T>
struct Output {
    const Cta& c;
    int half;  // 0: columns 0–255, 1: 256–511
    int warp, lane, wg_thread;
    float o0[64], o1[64];  // columns 256·half + [0, 128) and + [128, 256)

    FMLA_DEVICE int row_of(int h) const { return 16 * warp + (lane >> 2) + 8 * h; }

    // Zeroes rows [valid, 64) of this warpgroup's four V boxes of `stage`.
    FMLA_DEVICE void zero_tail(int stage, int valid) const {
        const int rows = kBlockN - valid;
        for (int i = wg_thread; i < rows * kVBoxesPerWg * 8; i += kWarpgroupThreads) {
            const int row = valid + i / (kVBoxesPerWg * 8);
            const int rest = i % (kVBoxesPerWg * 8);
            const int box = half * kVBoxesPerWg + rest / 8;
            const int chunk = rest % 8;
            st_shared_v4(c.k_box(stage, box) + row * 128 + (chunk << 4), 0u, 0u, 0u, 0u);
        }
        fence_proxy_async_shared();
        named_barrier(1 + half, kWarpgroupThreads);
    }

    // Writes this warpgroup's 256 columns of the piece's rows: O / l (0 for rows that saw no
    // key, and for an empty piece, whose accumulators hold nothing: scale 0 and select).
    FMLA_DEVICE void store(const DecodePiece& pc, const float (&l_row)[2], bool empty) const {
        const DecodeParams& p = c.p;
        const int col_base = 256 * half + 2 * (lane & 3);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = c.global_row(row_of(h));
            const bool valid = r < p.rows;
            const float l = l_row[h];
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
            auto value = [&](float x) { return empty ? 0.0f : x * inv; };
            if (pc.split) {
                if (valid) {
                    // Chunk n of o0 is 8·n columns past col_base, of o1 128 + 8·n (split_out_offset).
                    float* acc = reinterpret_cast<float*>(p.o_accum) + split_out_offset(pc.slot, c.kv_head, p.h_kv, p.rows, r, col_base);
#pragma unroll
                    for (int n = 0; n < 16; ++n) {
                        *reinterpret_cast<float2v*>(acc + n * kSplitChunkFloats) = float2v{value(o0[4 * n + 2 * h]), value(o0[4 * n + 2 * h + 1])};
                        *reinterpret_cast<float2v*>(acc + (16 + n) * kSplitChunkFloats) =
                            float2v{value(o1[4 * n + 2 * h]), value(o1[4 * n + 2 * h + 1])};
                    }
                }
            } else {
                // Four chunks of 8 columns at a time: the quad's lanes swap their column pairs so
                // that lane q holds all 8 columns of chunk 4m + q, one 16-byte store each (a warp
                // writes 64 contiguous bytes of each of its 8 rows instead of 16). Every lane
                // shuffles; only lanes of valid rows store.
                u8* out_row = reinterpret_cast<u8*>(p.output);
                if (valid) out_row += 2 * (output_offset(p, pc.request, query_row(r, c.kv_head, p.group)) + 256 * half);
                const int q = lane & 3;
                auto store_half = [&](const float (&o)[64], int col0) FMLA_INLINE_LAMBDA {
#pragma unroll
                    for (int m = 0; m < 4; ++m) {
                        u32 v[4];
#pragma unroll
                        for (int jj = 0; jj < 4; ++jj) {
                            const int n = 4 * m + jj;
                            v[jj] = ElemOps<T>::pack2(value(o[4 * n + 2 * h]), value(o[4 * n + 2 * h + 1]));
                        }
                        quad_transpose(v, q);
                        if (valid) store16(out_row + 2 * (col0 + 8 * (4 * m + q)), Vec16{v[0], v[1], v[2], v[3]});
                    }
                };
                store_half(o0, 0);
                store_half(o1, 128);
            }
        }
        // A warp whose rows are partly valid took both sides of `valid`: it reconverges here,
        // before the named barriers (aligned: whole warps) that follow.
        asm volatile("bar.warp.sync 0xffffffff;" ::: "memory");
    }

    FMLA_DEVICE void run() {
        const DecodeParams& p = c.p;
        const bool leader = wg_thread == 0;
        int j = 0;
        for_each_piece<true>(p, c.part, [&](const DecodePiece& pc) FMLA_INLINE_LAMBDA {
            const int n = pc.tile_end - pc.tile_begin;
            float l_row[2] = {0.0f, 0.0f};
            for (int b = 0; b < n; ++b, ++j) {
                const int blk = pc.tile_begin + b;
                const int stage = j & 1;
                mbarrier_wait(c.p_full(stage), (j >> 1) & 1);
#pragma unroll
                for (int i = 0; i < kVBoxesPerWg; ++i) mbarrier_wait(c.full_bar(stage, half * kVBoxesPerWg + i), (j >> 1) & 1);
                const int valid = pc.seqlen - blk * kBlockN;
                if (valid < kBlockN) zero_tail(stage, valid);
                // Rescale by the block's factor (on the first block of a piece the accumulators
                // are overwritten: its first wgmma does not accumulate).
                const float a0 = ld_shared_f32(c.alpha(stage, row_of(0)));
                const float a1 = ld_shared_f32(c.alpha(stage, row_of(1)));
#pragma unroll
                for (int n8 = 0; n8 < 16; ++n8) {
                    o0[4 * n8 + 0] *= a0;
                    o0[4 * n8 + 1] *= a0;
                    o0[4 * n8 + 2] *= a1;
                    o0[4 * n8 + 3] *= a1;
                    o1[4 * n8 + 0] *= a0;
                    o1[4 * n8 + 1] *= a0;
                    o1[4 * n8 + 2] *= a1;
                    o1[4 * n8 + 3] *= a1;
                }
                wgmma_fence_operands(o0);
                wgmma_fence_operands(o1);
#ifndef FMLA_SM90_PROBE_NO_MATH
                wgmma_fence();
                const u64 dp = desc_k_major_sw128(c.p_tile(stage));
                const u64 dv = desc_mn_major_sw128(c.k_box(stage, half * kVBoxesPerWg), kBoxBytes);
                const int acc = b != 0;
                wgmma_m64n128k16_ss_tb<T, 0, 0>(o0, dp, dv, acc);
                wgmma_m64n128k16_ss_tb<T, 0, 2 * kBoxBytes>(o1, dp, dv, acc);
                wgmma_m64n128k16_ss_tb<T, 32, 2048>(o0, dp, dv, 1);
                wgmma_m64n128k16_ss_tb<T, 32, 2 * kBoxBytes + 2048>(o1, dp, dv, 1);
                wgmma_m64n128k16_ss_tb<T, 64, 4096>(o0, dp, dv, 1);
                wgmma_m64n128k16_ss_tb<T, 64, 2 * kBoxBytes + 4096>(o1, dp, dv, 1);
                wgmma_m64n128k16_ss_tb<T, 96, 6144>(o0, dp, dv, 1);
                wgmma_m64n128k16_ss_tb<T, 96, 2 * kBoxBytes + 6144>(o1, dp, dv, 1);
                wgmma_commit();
                wgmma_wait<0>();
#endif
                wgmma_fence_operands(o0);
                wgmma_fence_operands(o1);
                l_row[0] = ld_shared_f32(c.row_l(stage, row_of(0)));
                l_row[1] = ld_shared_f32(c.row_l(stage, row_of(1)));
                // Release this warpgroup's V boxes and its share of the P box (count 2); the reads
                // of alpha and row_l above come first, the stage's next block overwrites them.
                named_barrier(1 + half, kWarpgroupThreads);
#pragma unroll
                for (int i = 0; i < kVBoxesPerWg; ++i) mbarrier_arrive_if(c.empty_bar(stage, half * kVBoxesPerWg + i), leader);
                mbarrier_arrive_if(c.empty_bar(stage, kPBox), leader);
                FMLA_PROBE_STAMP(leader && half == 0 && b == 0, kStampFirstPvDone);
                FMLA_PROBE_STAMP(leader && half == 0 && b + 1 == n, kStampLastPvDone);
            }
            store(pc, l_row, n <= 0);
            FMLA_PROBE_STAMP(leader && half == 0, kStampStored);
        });
    }
};

template <typename T, int kBoxes>
FMLA_DEVICE void decode(const DecodeParams& p, u64 k_map) {
    if (!has_shared_memory(reinterpret_cast<ErrorRecord*>(p.error), Smem::bytes)) return;
    const u32 raw = smem_addr(smem_raw);
    Cta c{p, (raw + Smem::alignment - 1) & ~static_cast<u32>(Smem::alignment - 1), block_idx_x(), block_idx_y(),
          block_idx_z(), kBoxes};
    const int tid = thread_idx();
    FMLA_PROBE_STAMP(tid == 0, kStampEntry);
    if (tid == 0) {
        for (int i = 0; i < kStages * kMaxBoxes; ++i) {
            mbarrier_init(c.bar(Smem::full) + 8 * i, 1);
            // The P box is released by both output warpgroups, a V box by its owner.
            mbarrier_init(c.bar(Smem::empty) + 8 * i, i % kMaxBoxes == kPBox ? 2 : 1);
        }
        for (int st = 0; st < kStages; ++st) mbarrier_init(c.p_full(st), kWarpgroupThreads);
        mbarrier_init(c.bar(Smem::q_full), kQLoaders);
        mbarrier_init(c.bar(Smem::q_empty), 1);
        mbarrier_init_fence();
        prefetch_tensor_map(k_map);
    }
    sync_threads();
    decode_prologue(p, c.part, tid, kThreads);

    // WG1 writes the split LSEs, WG2–3 the partial outputs: the three then merge the part's split
    // pieces. Each calls the merge from its own branch, so that ptxas compiles it under that
    // warpgroup's register budget (after the branches it would get the producer's 40, and spill);
    // so WG1 and WG2–3 meet at the merge's barrier from different instructions: unaligned.
    auto merge = [&] FMLA_INLINE_LAMBDA {
        auto sync = [] FMLA_INLINE_LAMBDA { named_barrier_unaligned(kMergeBarrier, kMergeThreads); };
        // Scratch: the Q boxes and the K ring, which no one reads or loads once the part's pieces
        // are done (every box of every block landed: the score warpgroup waited for each).
        float* scratch = reinterpret_cast<float*>(smem_raw + (c.base - raw) + Smem::q);
        merge_part<T, kMergeThreads>(p, c.part, c.kv_head, c.m_block, kRows, tid - kWarpgroupThreads, scratch, (Smem::alpha - Smem::q) / 4, sync);
        FMLA_PROBE_STAMP(tid == kWarpgroupThreads, kStampEnd);
    };
    const int wg = warpgroup_idx();
    if (wg == 0) {
        setmaxnreg_dec<kProducerRegs>();
        const int warp = warp_idx();
        if (warp == 0) {
            if (lane_idx() == 0) produce_k(c, k_map);
        } else {
            produce_q<kBoxes>(c, warp - 1, lane_idx());
        }
    } else if (wg == 1) {
        setmaxnreg_inc<kScoreRegs>();
        Scores<T, kBoxes> s{c, warp_idx() & 3, lane_idx(), 0, 0, {}, {}, {}, {}};
        s.run();
        merge();
    } else {
        setmaxnreg_inc<kOutputRegs>();
        Output<T> o{c, wg - 2, warp_idx() & 3, lane_idx(), warpgroup_thread(), {}, {}};
        o.run();
        merge();
    }
}

}  // namespace sm90dec
}  // namespace fmla

namespace fmla::sm90dec {
// The descriptor of an entry: 4 warpgroups, 64 query rows per CTA, a two-stage K ring, one head
// dimension (kBoxes boxes of 64 columns).
template <typename T, int kBoxes>
constexpr KernelDesc desc() {
    constexpr int code = ElemOps<T>::kCode;
    return kernel_desc(kThreads).rows(kRows).pipeline(kStages).smem(Smem::bytes).types(code, code, code).dims(kBoxes * kBoxCols);
}
}  // namespace fmla::sm90dec

FMLA_MODULE_ABI();
FMLA_EXPORT_ABI(DecodeParamsSm90);
FMLA_EXPORT_ABI(MergeCounters);

// Entry names: mla_decode_sm90_<dtype> (head_dim 576) and mla_decode_sm90_<dtype>_d512. The K
// tensor map is read in place from the parameter struct (its generic address), never copied,
// unless k_map_global points to a copy in global memory.
#define FMLA_SM90_KERNEL(name, T, BOXES)                                                                          \
    FMLA_KERNEL(name, DecodeParamsSm90, (fmla::sm90dec::desc<T, BOXES>())) {                                             \
        const fmla::u64 k_map = p.k_map_global != 0                                                               \
                                    ? p.k_map_global                                                              \
                                    : FMLA_PARAM_ADDRESS(name) + __builtin_offsetof(fmla::DecodeParamsSm90, k_map); \
        fmla::sm90dec::decode<T, BOXES>(p.d, k_map);                                                              \
    }

FMLA_SM90_KERNEL(mla_decode_sm90_bf16, fmla::bf16, 9)
FMLA_SM90_KERNEL(mla_decode_sm90_fp16, fmla::fp16, 9)
FMLA_SM90_KERNEL(mla_decode_sm90_bf16_d512, fmla::bf16, 8)
FMLA_SM90_KERNEL(mla_decode_sm90_fp16_d512, fmla::fp16, 8)
