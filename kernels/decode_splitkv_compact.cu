// targets: sm_80 sm_90a
// decode_splitkv_compact.cu: split-KV MLA decode on mma.sync for GPUs that allow at most 99 KB of
// shared memory per block (sm_86, sm_89: RTX 30/40, A10, L4, L40S). The computation and its
// outputs are those of decode_splitkv.cu; the difference is where the operands live.
//
// decode_splitkv.cu keeps a Q tile (M × 576) and whole 64-key K tiles in shared memory: 157,184
// bytes even with one stage at 64 rows, 95,360 at 16 rows with one stage (no load/compute
// overlap). Here a CTA takes 16 query rows and
//  - keeps Q in registers: Q passes through shared memory once per piece and each warp holds the
//    A fragments of its half of the head dimension (18 k-steps, 72 registers a thread);
//  - streams K in half blocks of 32 keys through a two-stage cp.async ring (2 × 36,864 bytes), so
//    the next half block loads while this one is computed;
//  - splits S = Q·Kᵀ over the head dimension: warp w takes keys 8·(w%4) … +8 of the half block
//    and k-steps [h·d/32, (h+1)·d/32) of the head dimension, h = w/4. The h = 1 warps hand their
//    partial scores to the h = 0 warps through shared memory (named barrier 1 + w%4, 64 threads),
//    and the h = 0 warps run the online softmax in fp32 (log2 domain) exactly as
//    decode_splitkv.cu's 16-row variant does, exchanging row maxima at named barrier 5
//    (128 threads);
//  - O += P·V: warp w takes the 16 rows and output columns 64w … 64w+64, two k-steps per half
//    block (8 × 4 fp32 accumulators a thread).
// The schedule's unit stays the 64-key block: a piece's blocks [b0, b1) are the half blocks
// [2·b0, 2·b1), of which those entirely past the request's length are skipped.
//
// Shared memory (Smem below, 78,464 bytes):
//  sK      2 × (32 × 576), swizzled  half-block ring; before the first half block, stage 1
//                                    holds the piece's Q rows on their way to the registers
//  sP      16 × 64, swizzled         softmax weights of the half block (keys in chunks 0…3)
//  sXchg   4 × 32 lanes × 16 bytes   partial scores of the h = 1 warps
//  sRowMax, sRowSum  4 × 16 fp32    per-slice row maxima / row sums
//  sAlpha, sRowL  16 fp32            per-row rescale factor of the half block / final row sum
// Every thread loads 16-byte chunks of one row of a half block (row = tid/8, chunks tid%8 + 8i),
// so it resolves one page through the block table per half block. Rows past the request's
// length are zero-filled and never read; a block id outside [0, num_blocks) is reported in the
// error record and its row zero-filled.
// Whole-CTA barriers per half block: after its loads land (which also frees the other stage, sP,
// sXchg and sAlpha of the previous half block), and after P and sAlpha are written (before P·V).
#include "cp_async.cuh"
#include "decode_common.cuh"
#include "mma.cuh"
#include "mma_decode.cuh"
#include "split_merge.cuh"
#include "tile_layout.cuh"

namespace fmla {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kRows = 16;                     // query rows per CTA: one row group
constexpr int kHalfKeys = kBlockN / 2;        // keys per stage
constexpr int kStages = 2;
constexpr int kSlices = 4;                    // key slices of 8 keys in S
constexpr int kMaxHalfSteps = kMaxHeadDim / 16 / 2;  // k-steps of one half of the head dimension
constexpr int kColsPerWarp = kHeadDimV / kWarps;      // P·V columns per warp
constexpr int kOutTiles = kColsPerWarp / 8;           // n8 tiles of O per warp
constexpr int kHalfTileBytes = kHalfKeys * kMaxHeadDim * kElemBytes;
constexpr int kRowMaxBarrier = 1 + kSlices;           // named barrier of the four softmax warps
static_assert(kSlices * 8 == kHalfKeys && 2 * kSlices == kWarps, "8 warps: 4 key slices × 2 halves of the head dimension");
static_assert(kRows * kMaxHeadDim * kElemBytes <= kHalfTileBytes, "Q passes through one stage");

struct Smem {
    static constexpr int k = 0;
    static constexpr int p = k + kStages * kHalfTileBytes;
    static constexpr int xchg = p + kRows * kBlockN * kElemBytes;
    static constexpr int row_max = xchg + kSlices * kWarpSize * 16;
    static constexpr int row_sum = row_max + kSlices * kRows * 4;
    static constexpr int alpha = row_sum + kSlices * kRows * 4;
    static constexpr int row_l = alpha + kRows * 4;
    static constexpr int bytes = row_l + kRows * 4;
};
static_assert(Smem::bytes == 78464, "the layout the comment above describes");

extern FMLA_SHARED __attribute__((aligned(128))) u8 decode_smem[];

// One thread's share of a 32-row tile load: row tid/8, chunks tid%8 + 8i.
FMLA_DEVICE void load_half_rows(u32 s_tile, const void* src, bool valid, int chunks, const void* fallback) {
    const u8* row_src = reinterpret_cast<const u8*>(src);
    const int row = thread_idx() >> 3;
    const int sub = thread_idx() & 7;
#pragma unroll
    for (int i = 0; i < kMaxHeadDim / 8 / 8; ++i) {
        int c = sub + 8 * i;
        if (c < chunks) {
            cp_async_16(s_tile + QKTile::chunk_offset(row, c), valid ? row_src + 16 * c : fallback, valid);
        }
    }
}


template <typename T>
struct CompactCta {
    const DecodeParams& p;
    int m_block, kv_head, warp, lane, slice, half;
    u32 smem;

    FragA qa[kMaxHalfSteps];  // Q: the 16 rows × this warp's half of the head dimension
    FragC o[kOutTiles];       // output accumulators: 16 rows × kColsPerWarp columns
    // Softmax state of rows g and g+8 (h = 0 warps).
    float m_run[2];  // running max (log2 domain), identical in the four h = 0 warps
    float l_run[2];  // this thread's partial row sums

    FMLA_DEVICE CompactCta(const DecodeParams& params)
        : p(params),
          m_block(block_idx_x()),
          kv_head(block_idx_y()),
          warp(warp_idx()),
          lane(lane_idx()),
          slice(warp_idx() % kSlices),
          half(warp_idx() / kSlices),
          smem(smem_addr(decode_smem)) {}

    FMLA_DEVICE u32 s_k_tile(int stage) const { return smem + Smem::k + stage * kHalfTileBytes; }
    FMLA_DEVICE u32 s_p_tile() const { return smem + Smem::p; }
    FMLA_DEVICE float4v* s_xchg() const { return reinterpret_cast<float4v*>(decode_smem + Smem::xchg); }
    FMLA_DEVICE float* s_row_max() const { return reinterpret_cast<float*>(decode_smem + Smem::row_max); }
    FMLA_DEVICE float* s_row_sum() const { return reinterpret_cast<float*>(decode_smem + Smem::row_sum); }
    FMLA_DEVICE float* s_alpha() const { return reinterpret_cast<float*>(decode_smem + Smem::alpha); }
    FMLA_DEVICE float* s_row_l() const { return reinterpret_cast<float*>(decode_smem + Smem::row_l); }

    // Tile-local rows of this thread: row_of(0) = lane/4, row_of(1) = that + 8.
    FMLA_DEVICE int row_of(int i) const { return (lane >> 2) + 8 * i; }

    // k-steps of one half of the head dimension (18 for 576, 16 for 512).
    FMLA_DEVICE int half_steps() const { return p.head_dim / 32; }

    // The piece's Q rows into stage `stage` (threads 0…127, one row per 8 threads).
    FMLA_DEVICE void load_q(int stage, int request) {
        const int row = thread_idx() >> 3;
        if (row >= kRows) return;
        const int r = m_block * kRows + row;
        const bool valid = r < p.rows;
        const T* src = nullptr;
        if (valid) src = reinterpret_cast<const T*>(p.q) + q_offset(p, request, query_row(r, kv_head, p.group));
        load_half_rows(s_k_tile(stage), src, valid, p.head_dim / 8, reinterpret_cast<const void*>(p.q));
    }

    // Keys [32·half_block, 32·half_block + 32) of `request` into stage `stage`.
    FMLA_DEVICE void load_k(int stage, int request, const int* bt_row, int half_block, int seqlen) {
        const int token = half_block * kHalfKeys + (thread_idx() >> 3);
        const T* src = k_row_source<T>(p, bt_row, request, kv_head, token, seqlen, reinterpret_cast<ErrorRecord*>(p.error));
        load_half_rows(s_k_tile(stage), src, src != nullptr, p.head_dim / 8, reinterpret_cast<const void*>(p.k_cache));
    }

    // This warp's A fragments of Q (k-steps half·half_steps … +half_steps) from the staged rows.
    FMLA_DEVICE void load_q_frags(u32 s_q) {
        const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8;
        const int steps = half_steps();
        const int kk0 = half * steps;
#pragma unroll
        for (int i = 0; i < kMaxHalfSteps; ++i) {
            if (i < steps) ldmatrix_x4(qa[i].r, s_q + QKTile::chunk_offset(a_row, 2 * (kk0 + i) + (lane >> 4)));
        }
    }

    FMLA_DEVICE void load_score_frag(FragB& b, u32 s_k, int kk) const {
        u32 r[2];
        ldmatrix_x2(r, s_k + QKTile::chunk_offset(8 * slice + (lane & 7), 2 * kk + ((lane >> 3) & 1)));
        b = FragB{{r[0], r[1]}};
    }

    // S (16 rows × this slice's 8 keys) = Q · Kᵀ over this warp's half of the head dimension; the
    // fragment of k-step i+1 is loaded while the MMA of k-step i runs.
    FMLA_DEVICE void compute_partial_scores(FragC& s, u32 s_k) const {
        zero(s);
        const int steps = half_steps();
        const int kk0 = half * steps;
        FragB b[2];
        load_score_frag(b[0], s_k, kk0);
#pragma unroll
        for (int i = 0; i < kMaxHalfSteps; ++i) {
            if (i < steps) {
                if (i + 1 < steps) load_score_frag(b[(i + 1) & 1], s_k, kk0 + i + 1);
                Mma<T>::run(s, qa[i], b[i & 1]);
            }
        }
    }

    // The h = 1 warps hand their partial scores over; the h = 0 warps add them to theirs.
    FMLA_DEVICE void combine_halves(FragC& s) const {
        float4v* xchg = s_xchg() + slice * kWarpSize + lane;
        if (half == 1) *xchg = float4v{s.r[0], s.r[1], s.r[2], s.r[3]};
        named_barrier(1 + slice, 2 * kWarpSize);
        if (half == 0) {
            const float4v v = *xchg;
            s.r[0] += v.x;
            s.r[1] += v.y;
            s.r[2] += v.z;
            s.r[3] += v.w;
        }
    }

    // Online softmax over one half block (h = 0 warps): masks, exchanges row maxima among the four
    // slices, publishes each row's rescale factor in sAlpha and writes this slice of P into sP.
    FMLA_DEVICE void softmax_half(FragC& s, int half_block, int seqlen) {
        float limit[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            int r = m_block * kRows + row_of(i);
            int visible = seqlen;
            if (p.causal) visible = seqlen - p.s_q + r / p.group + 1;
            limit[i] = static_cast<float>(r < p.rows ? visible : 0);
        }
        float mx[2] = {-inf_f(), -inf_f()};
        const int key_base = half_block * kHalfKeys + 8 * slice + 2 * (lane & 3);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            int i = e >> 1;
            float key = static_cast<float>(key_base + (e & 1));
            float v = s.r[e] * p.scale_log2;
            v = key < limit[i] ? v : -inf_f();
            s.r[e] = v;
            mx[i] = fmax_(mx[i], v);
        }
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            mx[i] = fmax_(mx[i], shfl_xor(mx[i], 1));
            mx[i] = fmax_(mx[i], shfl_xor(mx[i], 2));
        }
        float* row_max = s_row_max();
        if ((lane & 3) == 0) {
            row_max[slice * kRows + row_of(0)] = mx[0];
            row_max[slice * kRows + row_of(1)] = mx[1];
        }
        named_barrier(kRowMaxBarrier, kSlices * kWarpSize);
        float alpha[2], m_use[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float m_new = m_run[i];
#pragma unroll
            for (int other = 0; other < kSlices; ++other) m_new = fmax_(m_new, row_max[other * kRows + row_of(i)]);
            m_use[i] = m_new == -inf_f() ? 0.0f : m_new;
            alpha[i] = exp2_approx(m_run[i] - m_use[i]);
            m_run[i] = m_new;
            l_run[i] *= alpha[i];
        }
        if (slice == 0 && (lane & 3) == 0) {
            s_alpha()[row_of(0)] = alpha[0];
            s_alpha()[row_of(1)] = alpha[1];
        }
        float p0 = exp2_approx(s.r[0] - m_use[0]);
        float p1 = exp2_approx(s.r[1] - m_use[0]);
        float p2 = exp2_approx(s.r[2] - m_use[1]);
        float p3 = exp2_approx(s.r[3] - m_use[1]);
        l_run[0] += p0 + p1;
        l_run[1] += p2 + p3;
        const u32 s_p = s_p_tile();
        const u32 lo = ElemOps<T>::pack2(p0, p1);
        const u32 hi = ElemOps<T>::pack2(p2, p3);
        asm volatile("st.shared.b32 [%0], %1;" ::"r"(s_p + PTile::chunk_offset(row_of(0), slice) + 4 * (lane & 3)), "r"(lo)
                     : "memory");
        asm volatile("st.shared.b32 [%0], %1;" ::"r"(s_p + PTile::chunk_offset(row_of(1), slice) + 4 * (lane & 3)), "r"(hi)
                     : "memory");
    }

    // O (16 rows × this warp's 64 columns) = sAlpha · O + P (16 × 32) · V (32 × 64).
    FMLA_DEVICE void accumulate_pv(u32 s_k) {
        const float a0 = s_alpha()[lane >> 2];
        const float a1 = s_alpha()[(lane >> 2) + 8];
#pragma unroll
        for (int j = 0; j < kOutTiles; ++j) {
            o[j].r[0] *= a0;
            o[j].r[1] *= a0;
            o[j].r[2] *= a1;
            o[j].r[3] *= a1;
        }
        const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8;
        const int a_chunk = lane >> 4;
        const int v_key = (lane & 7) + ((lane >> 3) & 1) * 8;
        const int v_chunk = kColsPerWarp / 8 * warp + (lane >> 4);
        // Per k-step, all fragments are loaded before the first MMA so that their latencies overlap.
#pragma unroll
        for (int kk = 0; kk < kHalfKeys / 16; ++kk) {
            FragB b[kOutTiles];
            FragA a;
            ldmatrix_x4(a.r, s_p_tile() + PTile::chunk_offset(a_row, 2 * kk + a_chunk));
#pragma unroll
            for (int nb = 0; nb < kOutTiles / 2; ++nb) {
                u32 v[4];
                ldmatrix_x4_trans(v, s_k + QKTile::chunk_offset(16 * kk + v_key, v_chunk + 2 * nb));
                b[2 * nb] = FragB{{v[0], v[1]}};
                b[2 * nb + 1] = FragB{{v[2], v[3]}};
            }
#pragma unroll
            for (int j = 0; j < kOutTiles; ++j) Mma<T>::run(o[j], a, b[j]);
        }
    }

    // Writes the piece's result: final output and LSE, or an fp32 partial in split slot `slot`.
    FMLA_DEVICE void epilogue(int request, bool split, int slot) {
        // Softmax warps: total row sums across the four slices, then the LSE.
        if (half == 0) {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                l_run[i] += shfl_xor(l_run[i], 1);
                l_run[i] += shfl_xor(l_run[i], 2);
            }
            float* row_sum = s_row_sum();
            if ((lane & 3) == 0) {
                row_sum[slice * kRows + row_of(0)] = l_run[0];
                row_sum[slice * kRows + row_of(1)] = l_run[1];
            }
            named_barrier(kRowMaxBarrier, kSlices * kWarpSize);
            if (slice == 0 && (lane & 3) == 0) {
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    float l = 0.0f;
#pragma unroll
                    for (int other = 0; other < kSlices; ++other) l += row_sum[other * kRows + row_of(i)];
                    s_row_l()[row_of(i)] = l;
                    const int r = m_block * kRows + row_of(i);
                    if (r >= p.rows) continue;
                    const float lse2 = l > 0.0f ? m_run[i] + log2_approx(l) : -inf_f();
                    if (split) {
                        reinterpret_cast<float*>(p.lse_accum)[split_row(slot, kv_head, p.h_kv, p.rows, r)] = lse2;
                    } else {
                        reinterpret_cast<float*>(p.lse)[lse_offset(p, request, query_row(r, kv_head, p.group))] =
                            l > 0.0f ? lse2 * kLn2 : inf_f();
                    }
                }
            }
        }
        sync_threads();
        // P·V role: this warp's 64 columns of every row.
        const int col_base = kColsPerWarp * warp + 2 * (lane & 3);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int row = row_of(i);
            const int r = m_block * kRows + row;
            if (r >= p.rows) continue;
            const float l = s_row_l()[row];
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
            if (split) {
                // Tile j is 8·j columns past col_base: one chunk further (split_out_offset).
                float* acc = reinterpret_cast<float*>(p.o_accum) + split_out_offset(slot, kv_head, p.h_kv, p.rows, r, col_base);
#pragma unroll
                for (int j = 0; j < kOutTiles; ++j) {
                    float2v v = {o[j].r[2 * i] * inv, o[j].r[2 * i + 1] * inv};
                    *reinterpret_cast<float2v*>(acc + j * kSplitChunkFloats) = v;
                }
            } else {
                T* out_row = reinterpret_cast<T*>(p.output) + output_offset(p, request, query_row(r, kv_head, p.group));
#pragma unroll
                for (int j = 0; j < kOutTiles; ++j) {
                    u32 packed = ElemOps<T>::pack2(o[j].r[2 * i] * inv, o[j].r[2 * i + 1] * inv);
                    *reinterpret_cast<u32*>(out_row + col_base + 8 * j) = packed;
                }
            }
        }
    }

    // Processes blocks [tile_begin, tile_end) of `request` as half blocks and writes the piece's result.
    FMLA_DEVICE void run_piece(int request, int tile_begin, int tile_end, int seqlen, bool split, int slot) {
        const int* bt_row = reinterpret_cast<const int*>(p.block_table) + static_cast<i64>(request) * p.bt_batch_stride;
#pragma unroll
        for (int j = 0; j < kOutTiles; ++j) zero(o[j]);
        m_run[0] = m_run[1] = -inf_f();
        l_run[0] = l_run[1] = 0.0f;

        // Half blocks entirely past the length hold no key: skipping them changes nothing.
        const int half_begin = 2 * tile_begin;
        int half_end = 2 * tile_end;
        const int halves_in_use = (seqlen + kHalfKeys - 1) / kHalfKeys;
        if (half_end > halves_in_use) half_end = halves_in_use;
        const int halves = half_end > half_begin ? half_end - half_begin : 0;

        sync_threads();  // the previous piece is done with every shared buffer
        load_q(1, request);
        cp_async_commit();
        if (halves > 0) load_k(0, request, bt_row, half_begin, seqlen);
        cp_async_commit();
        cp_async_wait<1>();
        sync_threads();  // Q is in stage 1
        load_q_frags(s_k_tile(1));
        for (int j = 0; j < halves; ++j) {
            cp_async_wait<0>();
            // Half block j has landed; every warp is done with Q in stage 1 (j = 0) or with the
            // P·V of half block j−1, whose stage, sP and sAlpha are free again.
            sync_threads();
            if (j + 1 < halves) load_k((j + 1) % kStages, request, bt_row, half_begin + j + 1, seqlen);
            cp_async_commit();
            const u32 s_k = s_k_tile(j % kStages);
            FragC s;
            compute_partial_scores(s, s_k);
            combine_halves(s);
            if (half == 0) softmax_half(s, half_begin + j, seqlen);
            sync_threads();  // P and sAlpha are complete
            accumulate_pv(s_k);
        }
        cp_async_wait<0>();
        epilogue(request, split, slot);
    }
};

template <typename T>
FMLA_DEVICE void decode_splitkv_compact(const DecodeParams& p) {
    if (!has_shared_memory(reinterpret_cast<ErrorRecord*>(p.error), Smem::bytes)) return;
    CompactCta<T> cta(p);
    // The merge's scratch: the whole shared memory, free once the part's pieces are done.
    decode_part<T, kThreads>(p, block_idx_z(), cta.kv_head, cta.m_block, kRows, reinterpret_cast<float*>(decode_smem), Smem::bytes / 4,
                             [&](const DecodePiece& piece) FMLA_INLINE_LAMBDA {
        cta.run_piece(piece.request, piece.tile_begin, piece.tile_end, piece.seqlen, piece.split, piece.slot);
    });
}

// The descriptor: 8 warps, 16 query rows per CTA, a two-stage ring (of half blocks).
template <typename T>
constexpr KernelDesc compact_desc() {
    constexpr int code = ElemOps<T>::kCode;
    return kernel_desc(kThreads).rows(kRows).pipeline(kStages).smem(Smem::bytes).types(code, code, code);
}

}  // namespace fmla

FMLA_MODULE_ABI();
FMLA_EXPORT_ABI(DecodeParams);
FMLA_EXPORT_ABI(MergeCounters);

#define FMLA_COMPACT_KERNEL(name, T) \
    FMLA_KERNEL(name, DecodeParams, (fmla::compact_desc<T>())) { fmla::decode_splitkv_compact<T>(p); }

// Names: mla_decode_splitkv_compact_<dtype>_m16 (78,464 bytes of shared memory).
FMLA_COMPACT_KERNEL(mla_decode_splitkv_compact_bf16_m16, fmla::bf16)
FMLA_COMPACT_KERNEL(mla_decode_splitkv_compact_fp16_m16, fmla::fp16)
