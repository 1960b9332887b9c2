// mma.cuh: warp-level tensor-core tiles for sm_80+ (mma.sync m16n8k16, ldmatrix).
//
// Fragment layouts (lane = 4·g + t, g = lane/4, t = lane%4):
//   A 16×16 (row-major)  a[0]: (g,   2t..2t+1)  a[1]: (g+8, 2t..2t+1)
//                        a[2]: (g,   2t+8..)    a[3]: (g+8, 2t+8..)
//   B 16×8  (k × n)      b[0]: (k 2t..2t+1, n g) b[1]: (k 2t+8.., n g)
//   C 16×8  (fp32)       c[0..1]: (g, 2t..2t+1)  c[2..3]: (g+8, 2t..2t+1)
#pragma once
#include "base.cuh"
#include "numeric.cuh"

namespace fmla {

struct FragA { u32 r[4]; };
struct FragB { u32 r[2]; };
struct FragC { float r[4]; };

template <typename T> struct Mma;

template <> struct Mma<bf16> {
    static FMLA_DEVICE void run(FragC& c, const FragA& a, const FragB& b) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(c.r[0]), "+f"(c.r[1]), "+f"(c.r[2]), "+f"(c.r[3])
            : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]), "r"(b.r[1]));
    }
};

template <> struct Mma<fp16> {
    static FMLA_DEVICE void run(FragC& c, const FragA& a, const FragB& b) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(c.r[0]), "+f"(c.r[1]), "+f"(c.r[2]), "+f"(c.r[3])
            : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]), "r"(b.r[1]));
    }
};

// Four 8×8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i.
FMLA_DEVICE void ldmatrix_x4(u32 (&r)[4], u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// Two 8×8 b16 matrices; lanes 0..15 give the row addresses (the others' are ignored).
FMLA_DEVICE void ldmatrix_x2(u32 (&r)[2], u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
}

// As ldmatrix_x4, each matrix transposed on the way in.
FMLA_DEVICE void ldmatrix_x4_trans(u32 (&r)[4], u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

FMLA_DEVICE void zero(FragC& c) {
#pragma unroll
    for (int i = 0; i < 4; ++i) c.r[i] = 0.0f;
}

}  // namespace fmla
