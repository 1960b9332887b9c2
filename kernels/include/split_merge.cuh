// split_merge.cuh: the merge of split requests inside the decode kernel, shared by every path.
//
// A request cut into S pieces is computed by S CTAs of one grid column (same m_block, same KV
// head): piece j (its split index) by part P0 + j. Each writes its fp32 partial and log2 LSE to
// split slot num_splits[request] + j, exactly as for decode_combine.cu. Then:
//   1. merge_arrive: after the piece's epilogue the CTA's threads synchronize, and one thread
//      publishes the partial (gpu-scope fence, release add on the group's `arrived` counter).
//   2. After all its pieces, merge_finish for each split piece: one thread waits (acquire load)
//      until `arrived` reaches S; then the CTA merges its share of the tile: the float4 units
//      [j·U/S, (j+1)·U/S) of the U units of the tile's row groups, counted in the split
//      workspace's memory order (split_out_offset), so that the share is one contiguous range of
//      each split slot. Finally it adds to `departed`, and the last of the S resets both counters
//      to 0 for the next decode.
// Every CTA arrives for all its pieces before it waits for any, and the grid never has more CTAs
// than the device has SMs (DecodeSchedule.PartsFor), each fitting on an SM on its own, so all of
// them are resident and every wait ends. A wait that still lasts kMergeSpinLimit polls (a device
// shared with other work that keeps SMs, say) is abandoned and reported in the error record
// (kErrorMerge) instead of hanging the stream.
//
// The merge of a CTA's units, in shared memory (`scratch`: buffers the kernel no longer needs,
// the Q tile and the K ring): the share's partials of all S splits are loaded with cp.async, all
// in flight at once (in passes when they do not fit), while the rows' split LSEs are read and
// turned into weights 2^(lse_i − lse), lse = log2 Σ_i 2^lse_i. Then L lanes take a unit (L a power
// of two, at most 32 and at most S rounded up), each adding its splits i ≡ lane (mod L) in
// increasing order, and combine their sums by a butterfly. The result depends only on S and the
// CTA's unit range, so it is bitwise deterministic. The output is written in its dtype and the LSE
// in natural log (+inf when no split saw a key), as the combine kernel does. Without scratch for
// one unit's partials the merge reads them from global memory and recomputes each unit's row
// weights (merge_units_unstaged).
#pragma once
#include "cp_async.cuh"
#include "decode_common.cuh"
#include "grid_dependency.cuh"
#include "numeric.cuh"
#include "probe_timeline.cuh"

namespace fmla {

// Polls of a merge wait before it is abandoned (with a 256 ns sleep after the first 64: seconds).
constexpr int kMergeSpinLimit = 1 << 24;
static_assert(kHeadDimV % 4 == 0, "the merge moves float4 units");

// Split LSEs a thread of the merge loads at once.
constexpr int kMergeLseBatch = 8;

// One split piece a CTA computed: what merge_finish needs.
struct SplitPiece {
    int request;
    int split;  // its index among the request's pieces
    int count;  // the request's number of pieces (≥ 2)
    int first_slot;
};

FMLA_DEVICE MergeCounters* merge_counters(const DecodeParams& p, int request, int kv_head, int m_block) {
    MergeCounters* base = reinterpret_cast<MergeCounters*>(p.merge);
    return base + (static_cast<i64>(request) * p.h_kv + kv_head) * grid_dim_x() + m_block;
}

// The split piece of `piece`, for merge_arrive / merge_finish (count < 2: not split).
FMLA_DEVICE SplitPiece split_piece_of(const DecodeParams& p, const DecodePiece& piece) {
    const int* num_splits = reinterpret_cast<const int*>(p.num_splits);
    const int first = num_splits[piece.request];
    const int count = piece.split ? num_splits[piece.request + 1] - first : 1;
    return SplitPiece{piece.request, piece.slot - first, count, first};
}

// Step 1, by every thread of the merging set after the piece's partial is written. `sync` is a
// barrier over exactly the threads that wrote the partial (and will merge).
template <typename Sync>
FMLA_DEVICE void merge_arrive(const DecodeParams& p, const SplitPiece& s, int kv_head, int m_block, int tid, Sync&& sync) {
    sync();
    if (tid == 0) {
        fence_gpu();
        atomic_add_release_gpu(&merge_counters(p, s.request, kv_head, m_block)->arrived, 1);
        FMLA_PROBE_STAMP(true, kStampArrived);
    }
}

// Writes 4 merged output columns of a row (in the output dtype) and, at column 0, its LSE in
// natural log (lse2 is log2; −inf: no split saw a key, written as +inf as the combine kernel does).
template <typename T>
FMLA_DEVICE void write_merged(const DecodeParams& p, int request, int row, int kv_head, int col, const float4v& acc, float lse2) {
    const QueryRow q_row = query_row(row, kv_head, p.group);
    T* out = reinterpret_cast<T*>(p.output) + output_offset(p, request, q_row) + col;
    const u32 lo = ElemOps<T>::pack2(acc.x, acc.y);
    const u32 hi = ElemOps<T>::pack2(acc.z, acc.w);
    asm volatile("st.global.v2.b32 [%0], {%1, %2};" ::"l"(out), "r"(lo), "r"(hi) : "memory");
    if (col == 0) reinterpret_cast<float*>(p.lse)[lse_offset(p, request, q_row)] = lse2 == -inf_f() ? inf_f() : lse2 * kLn2;
}

// Float offset of split slot 0's region of the tile whose rows start at row0 (a whole row group):
// its units run in memory order from there, one slot every split_out_slot_stride floats.
FMLA_DEVICE i64 merge_region(const DecodeParams& p, const SplitPiece& s, int kv_head, int row0) {
    return split_out_offset(s.first_slot, kv_head, p.h_kv, p.rows, row0, 0);
}

// Lanes that add one unit's splits: a power of two, at most 32 and at most S rounded up, as many
// as `threads` threads allow for `units` units at once (two splits per lane at least).
FMLA_DEVICE int merge_lanes(int units, int count, int threads) {
    int lanes = 1;
    while (lanes < kWarpSize && lanes < count && units * lanes * 2 <= threads) lanes <<= 1;
    return lanes;
}

// The merge of units [begin, end) of the tile's region without shared memory: every unit
// recomputes its row's LSE.
template <typename T, int kThreads>
FMLA_DEVICE void merge_units_unstaged(const DecodeParams& p, const SplitPiece& s, int kv_head, int row0, int rows, int begin, int end,
                                      int tid) {
    const float* lse_accum = reinterpret_cast<const float*>(p.lse_accum);
    const float* o_region = reinterpret_cast<const float*>(p.o_accum) + merge_region(p, s, kv_head, row0);
    const i64 step = split_out_slot_stride(p.h_kv, p.rows);
    const int lane = tid & (kWarpSize - 1);
    const int lanes = merge_lanes(end - begin, s.count, kThreads);
    const int sub = lane & (lanes - 1);
    const int group = tid / lanes;
    const int groups = kThreads / lanes;

    // Trip counts are uniform across each warp (lanes divides 32), so the shuffles see whole warps.
    for (int base = begin; base < end; base += groups) {
        const int u = base + group;
        const SplitUnit at = split_unit(u % kSplitGroupUnits);
        const int rel = u / kSplitGroupUnits * kSplitRowGroup + at.row;
        const bool active = u < end && rel < rows;
        const int row = row0 + (active ? rel : 0);

        float mx = -inf_f();
        if (active) {
            for (int i = sub; i < s.count; i += lanes) {
                mx = fmax_(mx, load_l2_f32(lse_accum + split_row(s.first_slot + i, kv_head, p.h_kv, p.rows, row)));
            }
        }
        for (int m = 1; m < lanes; m <<= 1) mx = fmax_(mx, shfl_xor(mx, m));
        float sum = 0.0f;
        if (active && mx != -inf_f()) {
            for (int i = sub; i < s.count; i += lanes) {
                sum += exp2_approx(load_l2_f32(lse_accum + split_row(s.first_slot + i, kv_head, p.h_kv, p.rows, row)) - mx);
            }
        }
        for (int m = 1; m < lanes; m <<= 1) sum += shfl_xor(sum, m);
        const bool empty = !(sum > 0.0f);
        const float lse2 = empty ? 0.0f : mx + log2_approx(sum);

        float4v acc = {0.0f, 0.0f, 0.0f, 0.0f};
        if (active && !empty) {
            for (int i = sub; i < s.count; i += lanes) {
                const float w = exp2_approx(load_l2_f32(lse_accum + split_row(s.first_slot + i, kv_head, p.h_kv, p.rows, row)) - lse2);
                fma4(acc, w, load_l2_f32x4(o_region + i * step + 4 * static_cast<i64>(u)));
            }
        }
        for (int m = 1; m < lanes; m <<= 1) {
            acc.x += shfl_xor(acc.x, m);
            acc.y += shfl_xor(acc.y, m);
            acc.z += shfl_xor(acc.z, m);
            acc.w += shfl_xor(acc.w, m);
        }
        if (active && sub == 0) write_merged<T>(p, s.request, row, kv_head, at.col, acc, empty ? -inf_f() : lse2);
    }
}

// Step 2, by the kThreads threads of the merging set (tid in [0, kThreads)); rows_per_cta is the
// CTA's tile height (a multiple of kSplitRowGroup).
template <typename T, int kThreads, typename Sync>
FMLA_DEVICE void merge_finish(const DecodeParams& p, const SplitPiece& s, int kv_head, int m_block, int rows_per_cta, int tid,
                              float* scratch, int scratch_floats, Sync&& sync) {
    static_assert(kThreads % kWarpSize == 0, "the merge works in whole warps");
    MergeCounters* counters = merge_counters(p, s.request, kv_head, m_block);
    // The scratch may still be the target of this thread's last cp.async loads (a K ring): they
    // land before the barrier below, after which the merge owns it.
    cp_async_wait<0>();
    if (tid == 0) {
        int polls = 0;
        while (load_acquire_gpu(&counters->arrived) < s.count) {
            if (++polls > 64) nanosleep(256);
            if (polls > kMergeSpinLimit) {
                atomic_or_global(&reinterpret_cast<ErrorRecord*>(p.error)->flags, kErrorMerge);
                break;
            }
        }
        FMLA_PROBE_STAMP(true, kStampAllArrived);
    }
    sync();

    const int count = s.count;
    const int row0 = m_block * rows_per_cta;
    int rows = p.rows - row0;
    if (rows > rows_per_cta) rows = rows_per_cta;
    // The CTA's share: units [begin, end) of the tile's region in memory order (split_out_offset),
    // so that a split's share is one contiguous range.
    const int units = split_out_rows(rows) / kSplitRowGroup * kSplitGroupUnits;
    const int begin = static_cast<int>(static_cast<i64>(units) * s.split / count);
    const int end = static_cast<int>(static_cast<i64>(units) * (s.split + 1) / count);
    const int mine = end - begin;
    // Rows whose weights it needs (tile-relative): those of the row groups the share touches.
    const int row_lo = begin / kSplitGroupUnits * kSplitRowGroup;
    int row_hi = mine > 0 ? ((end - 1) / kSplitGroupUnits + 1) * kSplitRowGroup : row_lo;
    if (row_hi > rows) row_hi = rows;
    const int nr = row_hi > row_lo ? row_hi - row_lo : 0;
    // Scratch: weights [nr][S], the rows' LSEs [nr], then a pass's partials [S][pass units]
    // (float4, 16-byte aligned).
    const int data_at = (nr * (count + 1) + 3) & ~3;
    const int pass_capacity = scratch_floats > data_at ? (scratch_floats - data_at) / (4 * count) : 0;

    if (mine > 0 && pass_capacity > 0) {
        const float* lse_accum = reinterpret_cast<const float*>(p.lse_accum);
        const float* o_region = reinterpret_cast<const float*>(p.o_accum) + merge_region(p, s, kv_head, row0);
        const i64 step = split_out_slot_stride(p.h_kv, p.rows);
        const int lane = tid & (kWarpSize - 1);
        float* weight = scratch;
        float* row_lse = scratch + nr * count;
        const float4v* data = reinterpret_cast<const float4v*>(scratch + data_at);
        const u32 data_smem = smem_addr(scratch + data_at);
        const int passes = (mine + pass_capacity - 1) / pass_capacity;
        const int per_pass = (mine + passes - 1) / passes;

        // A pass's loads: every (split i, unit k) pair, units fastest, so that a warp reads one
        // contiguous range of a split; all in flight at once (cp.async), landing in data[i·n + k].
        auto issue = [&](int ub, int n) FMLA_INLINE_LAMBDA {
            const int di = kThreads / n, dk = kThreads % n;
            int i = tid / n, k = tid % n;
            while (i < count) {
                cp_async_16(data_smem + 16 * (i * n + k), o_region + i * step + 4 * static_cast<i64>(ub + k), true);
                k += dk;
                i += di;
                if (k >= n) {
                    k -= n;
                    ++i;
                }
            }
            cp_async_commit();
        };
        issue(begin, per_pass < mine ? per_pass : mine);

        // The weights of the rows, while the first pass's partials are in flight:
        // weight[rr·S + i] = 2^(lse_i − lse) of row row0 + row_lo + rr, row_lse[rr] = its lse (log2;
        // −inf when no split saw a key).
        // kMergeLseBatch loads in flight per thread (a loop of load-then-store would wait for each).
        for (int base = 0; base < nr * count; base += kMergeLseBatch * kThreads) {
            float v[kMergeLseBatch];
#pragma unroll
            for (int b = 0; b < kMergeLseBatch; ++b) {
                const int idx = base + b * kThreads + tid;
                const int rr = idx / count;
                const int i = idx - rr * count;
                v[b] = idx < nr * count ? load_l2_f32(lse_accum + split_row(s.first_slot + i, kv_head, p.h_kv, p.rows, row0 + row_lo + rr)) : 0.0f;
            }
#pragma unroll
            for (int b = 0; b < kMergeLseBatch; ++b) {
                const int idx = base + b * kThreads + tid;
                if (idx < nr * count) weight[idx] = v[b];
            }
        }
        sync();
        const int warp = tid / kWarpSize;
        for (int rr = warp; rr < nr; rr += kThreads / kWarpSize) {
            float* w = weight + rr * count;
            float mx = -inf_f();
            for (int i = lane; i < count; i += kWarpSize) mx = fmax_(mx, w[i]);
#pragma unroll
            for (int m = 16; m > 0; m >>= 1) mx = fmax_(mx, shfl_xor(mx, m));
            float sum = 0.0f;
            if (mx != -inf_f()) {
                for (int i = lane; i < count; i += kWarpSize) sum += exp2_approx(w[i] - mx);
            }
#pragma unroll
            for (int m = 16; m > 0; m >>= 1) sum += shfl_xor(sum, m);
            const bool empty = !(sum > 0.0f);
            const float lse2 = empty ? -inf_f() : mx + log2_approx(sum);
            for (int i = lane; i < count; i += kWarpSize) w[i] = empty ? 0.0f : exp2_approx(w[i] - lse2);
            if (lane == 0) row_lse[rr] = lse2;
        }

        for (int ub = begin; ub < end; ub += per_pass) {
            const int n = end - ub < per_pass ? end - ub : per_pass;
            cp_async_wait<0>();
            sync();
            // L lanes per unit, each adding its splits i ≡ lane (mod L) in increasing order, then a
            // butterfly: the result depends only on S and the pass's units.
            const int lanes = merge_lanes(n, count, kThreads);
            const int sub = lane & (lanes - 1);
            const int groups = kThreads / lanes;
            for (int k0 = 0; k0 < n; k0 += groups) {
                const int k = k0 + tid / lanes;
                const int u = ub + k;
                const SplitUnit at = split_unit(u % kSplitGroupUnits);
                const int rel = u / kSplitGroupUnits * kSplitRowGroup + at.row;
                const bool active = k < n && rel < rows;
                float4v acc = {0.0f, 0.0f, 0.0f, 0.0f};
                if (active) {
                    const float* w = weight + (rel - row_lo) * count;
                    for (int i = sub; i < count; i += lanes) {
                        const float4v v = data[i * n + k];
                        fma4(acc, w[i], v);
                    }
                }
                for (int m = 1; m < lanes; m <<= 1) {
                    acc.x += shfl_xor(acc.x, m);
                    acc.y += shfl_xor(acc.y, m);
                    acc.z += shfl_xor(acc.z, m);
                    acc.w += shfl_xor(acc.w, m);
                }
                if (active && sub == 0) write_merged<T>(p, s.request, row0 + rel, kv_head, at.col, acc, row_lse[rel - row_lo]);
            }
            if (ub + per_pass < end) {
                sync();  // every thread is done with this pass's partials
                issue(ub + per_pass, end - ub - per_pass < per_pass ? end - ub - per_pass : per_pass);
            }
        }
    } else if (mine > 0) {
        merge_units_unstaged<T, kThreads>(p, s, kv_head, row0, rows, begin, end, tid);
    }

    sync();
    if (tid == 0) {
        FMLA_PROBE_STAMP(true, kStampMerged);
        if (atomic_add_release_gpu(&counters->departed, 1) == s.count - 1) {
            store_relaxed_gpu(&counters->arrived, 0);
            store_relaxed_gpu(&counters->departed, 0);
        }
    }
}

// The split pieces a CTA computed, at most two per part (its first and its last request).
struct SplitPieces {
    SplitPiece piece[2];
    int n;

    FMLA_DEVICE SplitPieces() : n(0) {}

    FMLA_DEVICE void add(const SplitPiece& s) {
        if (n < 2) piece[n++] = s;
    }
};

// The prologue every decode kernel runs before the previous grid on the stream has finished (PDL),
// then the wait. It reads only what the step wrote before its first decode (the part record, the
// block table, the lengths) and only to prefetch: the part's first 64-key block of K goes into L2
// (with its address translation), so that the first tile's loads after the wait hit L2. A stale
// read there costs a useless prefetch, never a wrong result: L2 is where every write lands.
// Called by all `threads` threads of the CTA (tid in [0, threads)).
FMLA_DEVICE void decode_prologue(const DecodeParams& p, int part_index, int tid, int threads) {
    const DecodePart* parts = reinterpret_cast<const DecodePart*>(p.parts);
    const DecodePart part = parts[part_index];
    const int request = part.begin_request;
    if (request >= 0 && request < p.batch) {
        const int* bt_row = reinterpret_cast<const int*>(p.block_table) + static_cast<i64>(request) * p.bt_batch_stride;
        const int len = reinterpret_cast<const int*>(p.cache_seqlens)[request];
        const int lines_per_row = (p.head_dim * 2 + 127) / 128;
        const int kv_head = block_idx_y();
        for (int idx = tid; idx < kBlockN * lines_per_row; idx += threads) {
            const int row = idx / lines_per_row;
            const int token = part.begin_block * kBlockN + row;
            if (token >= len) break;
            const int page = token / p.page_block_size;
            if (page >= p.max_blocks_per_seq) break;
            const int block_id = bt_row[page];
            if (block_id < 0 || block_id >= p.num_blocks) continue;
            const u8* row_ptr = reinterpret_cast<const u8*>(p.k_cache) +
                                2 * (static_cast<i64>(block_id) * p.k_block_stride +
                                     static_cast<i64>(token - page * p.page_block_size) * p.k_row_stride +
                                     static_cast<i64>(kv_head) * p.k_head_stride);
            prefetch_l2(row_ptr + 128 * (idx - row * lines_per_row));
        }
    }
    wait_for_prior_grid();
    allow_dependent_launch();
    FMLA_PROBE_STAMP(tid == 0, kStampPrologueDone);
}

// A schedule part for CTAs whose kThreads threads all compute every piece (barrier 0): runs
// run(piece) for each piece of part `part_index`, and, when the plan merges in the kernel, the
// merge of each split piece. `scratch` is shared memory the merge may use once the pieces are done
// (scratch_floats floats).
template <typename T, int kThreads, typename Run>
FMLA_DEVICE void decode_part(const DecodeParams& p, int part_index, int kv_head, int m_block, int rows_per_cta, float* scratch,
                             int scratch_floats, Run&& run) {
    decode_prologue(p, part_index, thread_idx(), kThreads);
    SplitPieces merges;
    auto sync = [] FMLA_INLINE_LAMBDA { sync_threads(); };
    for_each_piece(p, part_index, [&](const DecodePiece& piece) FMLA_INLINE_LAMBDA {
        run(piece);
        if (piece.split && p.merge != 0) {
            const SplitPiece s = split_piece_of(p, piece);
            merge_arrive(p, s, kv_head, m_block, thread_idx(), sync);
            merges.add(s);
        }
    });
    for (int i = 0; i < merges.n; ++i) {
        merge_finish<T, kThreads>(p, merges.piece[i], kv_head, m_block, rows_per_cta, thread_idx(), scratch, scratch_floats, sync);
    }
}

// The merge of a part's split pieces after all of them are computed, for paths whose pieces are
// written by several warp roles (decode_sm90.cu): the kThreads threads of the merging set (tid in
// [0, kThreads), `sync` a barrier over them, reached after every partial write of the part)
// arrive for every split piece of the part, then finish each (with `scratch` as in decode_part).
template <typename T, int kThreads, typename Sync>
FMLA_DEVICE void merge_part(const DecodeParams& p, int part_index, int kv_head, int m_block, int rows_per_cta, int tid, float* scratch,
                            int scratch_floats, Sync&& sync) {
    if (p.merge == 0) return;
    SplitPieces merges;
    for_each_piece(p, part_index, [&](const DecodePiece& piece) FMLA_INLINE_LAMBDA {
        if (piece.split) merges.add(split_piece_of(p, piece));
    });
    if (merges.n == 0) return;
    sync();
    if (tid == 0) {
        fence_gpu();
        for (int i = 0; i < merges.n; ++i) {
            atomic_add_release_gpu(&merge_counters(p, merges.piece[i].request, kv_head, m_block)->arrived, 1);
        }
        FMLA_PROBE_STAMP(true, kStampArrived);
    }
    for (int i = 0; i < merges.n; ++i) {
        merge_finish<T, kThreads>(p, merges.piece[i], kv_head, m_block, rows_per_cta, tid, scratch, scratch_floats, sync);
    }
}

}  // namespace fmla
