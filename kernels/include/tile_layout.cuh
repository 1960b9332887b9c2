// tile_layout.cuh: swizzled shared-memory tiles of 16-bit elements.
//
// A tile row is a run of 16-byte chunks. Chunk c of row r is stored at chunk position
// c ^ (r & 7) within its group of eight, so the eight rows an ldmatrix phase reads at one logical
// chunk land in eight different bank groups (row pitches here are multiples of 128 bytes).
#pragma once
#include "base.cuh"

namespace fmla {

// Row-major tile with `kRowBytes` bytes per row (a multiple of 128).
template <int kRowBytes>
struct SwizzledTile {
    static_assert(kRowBytes % 128 == 0, "row pitch must be a multiple of 128 bytes");
    static constexpr int kChunksPerRow = kRowBytes / 16;

    // Byte offset of chunk `chunk` (16 bytes) of row `row`.
    static FMLA_DEVICE u32 chunk_offset(int row, int chunk) {
        return static_cast<u32>(row * kRowBytes + ((chunk ^ (row & 7)) << 4));
    }
};

}  // namespace fmla
