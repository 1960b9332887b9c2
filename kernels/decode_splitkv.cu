// targets: sm_80 sm_90a
// decode_splitkv.cu: split-KV MLA decode on tensor cores through mma.sync (sm_80 and newer).
//
// Work: CTA (x, y, z) takes query rows [M·x, M·x + M) of KV head y (row r = query token r/group,
// query head y·group + r%group), M = 16·RG, and the pieces of requests that schedule part z
// assigns it. For each piece it computes S = Q·Kᵀ over all head_dim columns and
// O += softmax(S)·V over the first 512 columns, 64 keys at a time, with an online softmax in
// fp32 (log2 domain). An unsplit piece writes the final output (q's dtype) and natural-log LSE;
// a piece of a split request writes its fp32 output, normalised by its own sum, and its log2
// LSE to split slot num_splits[request] + split, for decode_combine.cu to merge.
//
// Threads: 256 = 8 warps. RG = 4, 2 or 1 row groups of 16 query rows (M = 64, 32 or 16 rows per
// CTA, chosen by the host from the rows per KV head).
//  - S = Q·Kᵀ and the softmax: warp w takes row group w % RG and slice w / RG of the keys,
//    64/(8/RG) keys of the 64-key tile. The 8/RG warps of a row group exchange their row maxima
//    through sRowMax at named barrier 1 + row_group; the first slice publishes each row's
//    rescale factor (sAlpha) and, at the end, its sum (sRowL) and LSE.
//  - O += P·V: warp w takes all M rows and output columns 64w … 64w+64 (M/16 · 32 fp32
//    accumulators per thread), so every V column is read from shared memory once per tile.
//
// Shared memory (DecodeSmem below; RG = 4: 230,912 bytes with 2 stages, 157,184 with 1):
//  sQ  M × 576, swizzled                 loaded once per piece (cp.async)
//  sK  STAGES × (64 × 576), swizzled     key tiles, cp.async ring, prefetch distance STAGES−1;
//                                        V is the first 512 columns of the same tile
//  sP  M × 64, swizzled                  softmax weights in q's dtype, written by the S warps
//  sRowMax, sRowSum  (8/RG) × M fp32    per-slice row maxima / row sums
//  sAlpha, sRowL  M fp32                 per-row rescale factor of the tile / final row sum
// Every thread loads 16-byte chunks of one tile row (row = tid/4, chunks tid%4, +4, …), so
// each thread resolves one page through the block table per tile. Rows past the request's
// length are zero-filled and never read; a block id outside [0, num_blocks) is reported in the
// error record and its row zero-filled.
// Whole-CTA barriers: after a tile's loads land (before S), after P and sAlpha are written
// (before P·V), after P·V (before the buffers are refilled), and in the epilogue after sRowL.
#include "cp_async.cuh"
#include "decode_common.cuh"
#include "mma.cuh"
#include "mma_decode.cuh"
#include "split_merge.cuh"
#include "tile_layout.cuh"

namespace fmla {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;

constexpr int kKTileBytes = kBlockN * kMaxHeadDim * kElemBytes;

template <int STAGES, int RG>
struct DecodeSmem {
    static constexpr int kRows = 16 * RG;
    static constexpr int q = 0;
    static constexpr int k = q + kRows * kMaxHeadDim * kElemBytes;
    static constexpr int p = k + STAGES * kKTileBytes;
    static constexpr int row_max = p + kRows * kBlockN * kElemBytes;
    static constexpr int row_sum = row_max + kWarps * 16 * 4;
    static constexpr int alpha = row_sum + kWarps * 16 * 4;
    static constexpr int row_l = alpha + kRows * 4;
    static constexpr int bytes = row_l + kRows * 4;
};

extern FMLA_SHARED __attribute__((aligned(128))) u8 decode_smem[];

// One thread's share of a 64-row tile load: row tid/4, chunks tid%4 + 4i.
FMLA_DEVICE void load_rows(u32 s_tile, const void* src, bool valid, int chunks, const void* fallback) {
    const u8* row_src = reinterpret_cast<const u8*>(src);
    const int row = thread_idx() >> 2;
    const int sub = thread_idx() & 3;
#pragma unroll
    for (int i = 0; i < kMaxHeadDim / 8 / 4; ++i) {
        int c = sub + 4 * i;
        if (c < chunks) {
            cp_async_16(s_tile + QKTile::chunk_offset(row, c), valid ? row_src + 16 * c : fallback, valid);
        }
    }
}

template <typename T, int STAGES, int RG>
struct DecodeCta {
    using Smem = DecodeSmem<STAGES, RG>;
    static constexpr int kBlockM = 16 * RG;          // query rows per CTA
    static constexpr int kSlices = kWarps / RG;      // warps sharing one row group
    static constexpr int kKeysPerSlice = kBlockN / kSlices;
    static constexpr int kScoreTiles = kKeysPerSlice / 8;       // n8 tiles of S per warp
    static constexpr int kColsPerWarp = kHeadDimV / kWarps;    // P·V columns per warp
    static constexpr int kOutTiles = kColsPerWarp / 8;         // n8 tiles of O per row block

    const DecodeParams& p;
    int m_block, kv_head, warp, lane, row_group, slice;
    u32 smem;

    FragC o[RG][kOutTiles];  // output accumulators: M rows × kColsPerWarp columns per warp
    // Softmax state of rows g and g+8 of the warp's row group (S role).
    float m_run[2];  // running max (log2 domain), identical in all warps of the row group
    float l_run[2];  // this thread's partial row sums

    FMLA_DEVICE DecodeCta(const DecodeParams& params)
        : p(params),
          m_block(block_idx_x()),
          kv_head(block_idx_y()),
          warp(warp_idx()),
          lane(lane_idx()),
          row_group(warp_idx() % RG),
          slice(warp_idx() / RG),
          smem(smem_addr(decode_smem)) {}

    FMLA_DEVICE u32 s_q_tile() const { return smem + Smem::q; }
    FMLA_DEVICE u32 s_k_tile(int stage) const { return smem + Smem::k + stage * kKTileBytes; }
    FMLA_DEVICE u32 s_p_tile() const { return smem + Smem::p; }
    FMLA_DEVICE float* s_row_max() const { return reinterpret_cast<float*>(decode_smem + Smem::row_max); }
    FMLA_DEVICE float* s_row_sum() const { return reinterpret_cast<float*>(decode_smem + Smem::row_sum); }
    FMLA_DEVICE float* s_alpha() const { return reinterpret_cast<float*>(decode_smem + Smem::alpha); }
    FMLA_DEVICE float* s_row_l() const { return reinterpret_cast<float*>(decode_smem + Smem::row_l); }

    // Tile-local rows of this thread: row_of(0) = 16·row_group + lane/4, row_of(1) = that + 8.
    FMLA_DEVICE int row_of(int i) const { return 16 * row_group + (lane >> 2) + 8 * i; }

    // Named barrier of this warp's row group (all its slices).
    FMLA_DEVICE void row_group_barrier() const { named_barrier(1 + row_group, kWarpSize * kSlices); }

    FMLA_DEVICE void load_q(int request) {
        const int row = thread_idx() >> 2;
        if (row >= kBlockM) return;
        const int r = m_block * kBlockM + row;
        const bool valid = r < p.rows;
        const T* src = nullptr;
        if (valid) src = reinterpret_cast<const T*>(p.q) + q_offset(p, request, query_row(r, kv_head, p.group));
        load_rows(s_q_tile(), src, valid, p.head_dim / 8, reinterpret_cast<const void*>(p.q));
    }

    FMLA_DEVICE void load_k(int stage, int request, const int* bt_row, int tile, int seqlen) {
        const int token = tile * kBlockN + (thread_idx() >> 2);
        const T* src = k_row_source<T>(p, bt_row, request, kv_head, token, seqlen, reinterpret_cast<ErrorRecord*>(p.error));
        load_rows(s_k_tile(stage), src, src != nullptr, p.head_dim / 8, reinterpret_cast<const void*>(p.k_cache));
    }

    // Operand fragments of one k-step of S = Q·Kᵀ: Q rows of the row group, this slice's keys.
    struct ScoreFrags {
        FragA a;
        FragB b[kScoreTiles];
    };

    FMLA_DEVICE void load_score_frags(ScoreFrags& f, u32 s_k, int kk) const {
        const int a_row = 16 * row_group + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int key0 = kKeysPerSlice * slice;
        ldmatrix_x4(f.a.r, s_q_tile() + QKTile::chunk_offset(a_row, 2 * kk + (lane >> 4)));
        if constexpr (kScoreTiles == 1) {
            u32 b[2];
            ldmatrix_x2(b, s_k + QKTile::chunk_offset(key0 + (lane & 7), 2 * kk + ((lane >> 3) & 1)));
            f.b[0] = FragB{{b[0], b[1]}};
        } else {
#pragma unroll
            for (int np = 0; np < kScoreTiles / 2; ++np) {
                u32 b[4];
                ldmatrix_x4(b, s_k + QKTile::chunk_offset(key0 + 16 * np + (lane & 7) + ((lane >> 4) << 3),
                                                           2 * kk + ((lane >> 3) & 1)));
                f.b[2 * np] = FragB{{b[0], b[1]}};
                f.b[2 * np + 1] = FragB{{b[2], b[3]}};
            }
        }
    }

    // S (16 rows × this warp's kKeysPerSlice keys) = Q · Kᵀ over head_dim. The fragments of
    // k-step kk+1 are loaded while the MMAs of k-step kk run (two register sets).
    FMLA_DEVICE void compute_scores(FragC (&s)[kScoreTiles], u32 s_k) const {
#pragma unroll
        for (int j = 0; j < kScoreTiles; ++j) zero(s[j]);
        const int k_steps = p.head_dim / 16;
        ScoreFrags f[2];
        load_score_frags(f[0], s_k, 0);
        // head_dim is 512 or 576: 8 or 9 column blocks of 64, four k-steps of 16 each.
        for (int cb = 0; cb < k_steps / 4; ++cb) {
#pragma unroll
            for (int ks = 0; ks < 4; ++ks) {
                const int kk = 4 * cb + ks;
                if (kk + 1 < k_steps) load_score_frags(f[(ks + 1) & 1], s_k, kk + 1);
#pragma unroll
                for (int j = 0; j < kScoreTiles; ++j) Mma<T>::run(s[j], f[ks & 1].a, f[ks & 1].b[j]);
            }
        }
    }

    // Online softmax over one tile: masks, exchanges row maxima within the row group, publishes
    // each row's rescale factor in sAlpha and writes this warp's slice of P into sP.
    FMLA_DEVICE void softmax_tile(FragC (&s)[kScoreTiles], int tile, int seqlen) {
        float limit[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            int r = m_block * kBlockM + row_of(i);
            int visible = seqlen;
            if (p.causal) visible = seqlen - p.s_q + r / p.group + 1;
            limit[i] = static_cast<float>(r < p.rows ? visible : 0);
        }
        float mx[2] = {-inf_f(), -inf_f()};
        const int key_base = tile * kBlockN + kKeysPerSlice * slice + 2 * (lane & 3);
#pragma unroll
        for (int j = 0; j < kScoreTiles; ++j) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                int i = e >> 1;
                float key = static_cast<float>(key_base + 8 * j + (e & 1));
                float v = s[j].r[e] * p.scale_log2;
                v = key < limit[i] ? v : -inf_f();
                s[j].r[e] = v;
                mx[i] = fmax_(mx[i], v);
            }
        }
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            mx[i] = fmax_(mx[i], shfl_xor(mx[i], 1));
            mx[i] = fmax_(mx[i], shfl_xor(mx[i], 2));
        }
        float* row_max = s_row_max();
        if ((lane & 3) == 0) {
            row_max[slice * kBlockM + row_of(0)] = mx[0];
            row_max[slice * kBlockM + row_of(1)] = mx[1];
        }
        row_group_barrier();
        float alpha[2], m_use[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float m_new = m_run[i];
#pragma unroll
            for (int other = 0; other < kSlices; ++other) m_new = fmax_(m_new, row_max[other * kBlockM + row_of(i)]);
            m_use[i] = m_new == -inf_f() ? 0.0f : m_new;
            alpha[i] = exp2_approx(m_run[i] - m_use[i]);
            m_run[i] = m_new;
            l_run[i] *= alpha[i];
        }
        if (slice == 0 && (lane & 3) == 0) {
            s_alpha()[row_of(0)] = alpha[0];
            s_alpha()[row_of(1)] = alpha[1];
        }
        const u32 s_p = s_p_tile();
#pragma unroll
        for (int j = 0; j < kScoreTiles; ++j) {
            float p0 = exp2_approx(s[j].r[0] - m_use[0]);
            float p1 = exp2_approx(s[j].r[1] - m_use[0]);
            float p2 = exp2_approx(s[j].r[2] - m_use[1]);
            float p3 = exp2_approx(s[j].r[3] - m_use[1]);
            l_run[0] += p0 + p1;
            l_run[1] += p2 + p3;
            const int chunk = kScoreTiles * slice + j;
            const u32 lo = ElemOps<T>::pack2(p0, p1);
            const u32 hi = ElemOps<T>::pack2(p2, p3);
            asm volatile("st.shared.b32 [%0], %1;" ::"r"(s_p + PTile::chunk_offset(row_of(0), chunk) + 4 * (lane & 3)),
                         "r"(lo)
                         : "memory");
            asm volatile("st.shared.b32 [%0], %1;" ::"r"(s_p + PTile::chunk_offset(row_of(1), chunk) + 4 * (lane & 3)),
                         "r"(hi)
                         : "memory");
        }
    }

    // O (M rows × this warp's 64 columns) = sAlpha · O + P (M × 64) · V (64 × 64).
    FMLA_DEVICE void accumulate_pv(u32 s_k) {
#pragma unroll
        for (int rb = 0; rb < RG; ++rb) {
            const float a0 = s_alpha()[16 * rb + (lane >> 2)];
            const float a1 = s_alpha()[16 * rb + (lane >> 2) + 8];
#pragma unroll
            for (int j = 0; j < kOutTiles; ++j) {
                o[rb][j].r[0] *= a0;
                o[rb][j].r[1] *= a0;
                o[rb][j].r[2] *= a1;
                o[rb][j].r[3] *= a1;
            }
        }
        const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8;
        const int a_chunk = lane >> 4;
        const int v_key = (lane & 7) + ((lane >> 3) & 1) * 8;
        const int v_chunk = kColsPerWarp / 8 * warp + (lane >> 4);
        // Per k-step, all fragments are loaded before the first MMA so that their latencies overlap.
#pragma unroll
        for (int kk = 0; kk < kBlockN / 16; ++kk) {
            FragB b[kOutTiles];
            FragA a[RG];
#pragma unroll
            for (int rb = 0; rb < RG; ++rb) {
                ldmatrix_x4(a[rb].r, s_p_tile() + PTile::chunk_offset(16 * rb + a_row, 2 * kk + a_chunk));
            }
#pragma unroll
            for (int nb = 0; nb < kOutTiles / 2; ++nb) {
                u32 v[4];
                ldmatrix_x4_trans(v, s_k + QKTile::chunk_offset(16 * kk + v_key, v_chunk + 2 * nb));
                b[2 * nb] = FragB{{v[0], v[1]}};
                b[2 * nb + 1] = FragB{{v[2], v[3]}};
            }
#pragma unroll
            for (int rb = 0; rb < RG; ++rb) {
#pragma unroll
                for (int j = 0; j < kOutTiles; ++j) Mma<T>::run(o[rb][j], a[rb], b[j]);
            }
        }
    }

    // Writes the piece's result: final output and LSE, or an fp32 partial in split slot `slot`.
    FMLA_DEVICE void epilogue(int request, bool split, int slot) {
        // S role: total row sums across the row group's slices, then the LSE.
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            l_run[i] += shfl_xor(l_run[i], 1);
            l_run[i] += shfl_xor(l_run[i], 2);
        }
        float* row_sum = s_row_sum();
        if ((lane & 3) == 0) {
            row_sum[slice * kBlockM + row_of(0)] = l_run[0];
            row_sum[slice * kBlockM + row_of(1)] = l_run[1];
        }
        row_group_barrier();
        if (slice == 0 && (lane & 3) == 0) {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                float l = 0.0f;
#pragma unroll
                for (int other = 0; other < kSlices; ++other) l += row_sum[other * kBlockM + row_of(i)];
                s_row_l()[row_of(i)] = l;
                const int r = m_block * kBlockM + row_of(i);
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
        sync_threads();
        // P·V role: this warp's 64 columns of every row.
        const int col_base = kColsPerWarp * warp + 2 * (lane & 3);
#pragma unroll
        for (int rb = 0; rb < RG; ++rb) {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const int row = 16 * rb + (lane >> 2) + 8 * i;
                const int r = m_block * kBlockM + row;
                if (r >= p.rows) continue;
                const float l = s_row_l()[row];
                const float inv = l > 0.0f ? 1.0f / l : 0.0f;
                if (split) {
                    // Tile j is 8·j columns past col_base: one chunk further (split_out_offset).
                    float* acc = reinterpret_cast<float*>(p.o_accum) + split_out_offset(slot, kv_head, p.h_kv, p.rows, r, col_base);
#pragma unroll
                    for (int j = 0; j < kOutTiles; ++j) {
                        float2v v = {o[rb][j].r[2 * i] * inv, o[rb][j].r[2 * i + 1] * inv};
                        *reinterpret_cast<float2v*>(acc + j * kSplitChunkFloats) = v;
                    }
                } else {
                    T* out_row =
                        reinterpret_cast<T*>(p.output) + output_offset(p, request, query_row(r, kv_head, p.group));
#pragma unroll
                    for (int j = 0; j < kOutTiles; ++j) {
                        u32 packed = ElemOps<T>::pack2(o[rb][j].r[2 * i] * inv, o[rb][j].r[2 * i + 1] * inv);
                        *reinterpret_cast<u32*>(out_row + col_base + 8 * j) = packed;
                    }
                }
            }
        }
    }

    // Processes tiles [tile_begin, tile_end) of `request` and writes the piece's result.
    FMLA_DEVICE void run_piece(int request, int tile_begin, int tile_end, int seqlen, bool split, int slot) {
        const int* bt_row = reinterpret_cast<const int*>(p.block_table) + static_cast<i64>(request) * p.bt_batch_stride;
#pragma unroll
        for (int rb = 0; rb < RG; ++rb) {
#pragma unroll
            for (int j = 0; j < kOutTiles; ++j) zero(o[rb][j]);
        }
        m_run[0] = m_run[1] = -inf_f();
        l_run[0] = l_run[1] = 0.0f;

        sync_threads();  // the previous piece is done with every shared buffer
        load_q(request);
        cp_async_commit();
        const int tiles = tile_end - tile_begin;
#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {
            if (s < tiles) load_k(s, request, bt_row, tile_begin + s, seqlen);
            cp_async_commit();
        }
        for (int j = 0; j < tiles; ++j) {
            const int ahead = j + STAGES - 1;
            if (ahead < tiles) load_k(ahead % STAGES, request, bt_row, tile_begin + ahead, seqlen);
            cp_async_commit();
            cp_async_wait<STAGES - 1>();
            sync_threads();
            const u32 s_k = s_k_tile(j % STAGES);
            FragC s[kScoreTiles];
            compute_scores(s, s_k);
            FMLA_PROBE_STAMP(j == 0 && thread_idx() == 0, kStampFirstQkDone);
            softmax_tile(s, tile_begin + j, seqlen);
            sync_threads();  // P and sAlpha are complete
            FMLA_PROBE_STAMP(j == 0 && thread_idx() == 0, kStampFirstPOut);
            accumulate_pv(s_k);
            sync_threads();
            FMLA_PROBE_STAMP(j == 0 && thread_idx() == 0, kStampFirstPvDone);
        }
        FMLA_PROBE_STAMP(thread_idx() == 0, kStampLastPvDone);
        cp_async_wait<0>();
        epilogue(request, split, slot);
        FMLA_PROBE_STAMP(thread_idx() == 0, kStampStored);
    }
};

template <typename T, int STAGES, int RG>
FMLA_DEVICE void decode_splitkv(const DecodeParams& p) {
    using Cta = DecodeCta<T, STAGES, RG>;
    if (!has_shared_memory(reinterpret_cast<ErrorRecord*>(p.error), Cta::Smem::bytes)) return;
    Cta cta(p);
    FMLA_PROBE_STAMP(thread_idx() == 0, kStampEntry);
    // The merge's scratch: the Q tile and the K ring, free once the part's pieces are done.
    static_assert(Cta::Smem::q == 0 && Cta::Smem::k + STAGES * kKTileBytes == Cta::Smem::p, "the Q tile and the K ring are contiguous");
    decode_part<T, kThreads>(p, block_idx_z(), cta.kv_head, cta.m_block, Cta::kBlockM, reinterpret_cast<float*>(decode_smem + Cta::Smem::q),
                             Cta::Smem::p / 4, [&](const DecodePiece& piece) FMLA_INLINE_LAMBDA {
        cta.run_piece(piece.request, piece.tile_begin, piece.tile_end, piece.seqlen, piece.split, piece.slot);
    });
    FMLA_PROBE_STAMP(thread_idx() == 0, kStampEnd);
}

// The descriptor of a variant: 8 warps, 16·RG query rows per CTA, a STAGES-deep K ring.
template <typename T, int STAGES, int RG>
constexpr KernelDesc decode_desc() {
    constexpr int code = ElemOps<T>::kCode;
    return kernel_desc(kThreads).rows(16 * RG).pipeline(STAGES).smem(DecodeSmem<STAGES, RG>::bytes).types(code, code, code);
}

}  // namespace fmla

FMLA_MODULE_ABI();
FMLA_EXPORT_ABI(DecodeParams);
FMLA_EXPORT_ABI(MergeCounters);

#define FMLA_DECODE_KERNEL(name, T, STAGES, RG) \
    FMLA_KERNEL(name, DecodeParams, (fmla::decode_desc<T, STAGES, RG>())) { fmla::decode_splitkv<T, STAGES, RG>(p); }

// Names: mla_decode_splitkv_<dtype>_m<rows per CTA>[_1stage]. The two-stage K ring needs
// 230,912 bytes of shared memory at 64 rows (sm_90 allows 227 KB per block); the one-stage
// variant (157,184 bytes) is for devices with less (sm_80: 163 KB). Devices with 99 KB (sm_86,
// sm_89) run decode_splitkv_compact.cu instead.
FMLA_DECODE_KERNEL(mla_decode_splitkv_bf16_m64, fmla::bf16, 2, 4)
FMLA_DECODE_KERNEL(mla_decode_splitkv_bf16_m32, fmla::bf16, 2, 2)
FMLA_DECODE_KERNEL(mla_decode_splitkv_bf16_m16, fmla::bf16, 2, 1)
FMLA_DECODE_KERNEL(mla_decode_splitkv_fp16_m64, fmla::fp16, 2, 4)
FMLA_DECODE_KERNEL(mla_decode_splitkv_fp16_m32, fmla::fp16, 2, 2)
FMLA_DECODE_KERNEL(mla_decode_splitkv_fp16_m16, fmla::fp16, 2, 1)
FMLA_DECODE_KERNEL(mla_decode_splitkv_bf16_m64_1stage, fmla::bf16, 1, 4)
FMLA_DECODE_KERNEL(mla_decode_splitkv_fp16_m64_1stage, fmla::fp16, 1, 4)
