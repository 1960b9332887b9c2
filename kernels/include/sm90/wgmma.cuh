// wgmma.cuh: warpgroup matrix multiply-accumulate (sm_90a): shared-memory matrix descriptors,
// the fence / commit / wait protocol, and the shapes the decode kernels use.
//
// Layouts (16-bit elements; "SW128" is the 128-byte swizzle that TMA's SWIZZLE_128B writes:
// 16-byte chunk c of row r of a 1024-byte-aligned tile with 128-byte rows sits at chunk c ^ (r % 8)):
//  - K-major SW128 (A or B with K contiguous): rows of 64 elements along K, 8-row groups
//    1024 bytes apart (SBO); a k16 step starts 32 bytes further along the row.
//  - MN-major SW128 (B with N contiguous, "transposed"): rows are K indices with 64 N-elements
//    each, 8-row groups along K 1024 bytes apart (SBO), and the next 64 N-elements LBO bytes away.
//
// Accumulator fragment of m64nNk16 (fp32): thread t of the warpgroup (warp w = t/32, lane l)
// holds rows 16w + l/4 and 16w + l/4 + 8; for each 8-column chunk i, d[4i+0..1] are row
// 16w + l/4, columns 8i + 2(l%4) + {0,1}, and d[4i+2..3] the same columns of the row 8 below.
//
// Protocol: wgmma_fence_operands(d) and wgmma_fence() before the first wgmma that reads
// registers written by other instructions; issue; wgmma_commit(); wgmma_wait<N>() and then
// wgmma_fence_operands(d) before touching the accumulators or reusing the shared memory the group
// reads (N = groups left in flight).
#pragma once
#include "../base.cuh"
#include "../numeric.cuh"

namespace fmla::sm90 {

// Descriptor of a K-major SW128 operand whose first row starts at shared address `addr`.
FMLA_DEVICE u64 desc_k_major_sw128(u32 addr) {
    return static_cast<u64>((addr & 0x3FFFF) >> 4) | (static_cast<u64>(1) << 16) |
           (static_cast<u64>(1024 >> 4) << 32) | (static_cast<u64>(1) << 62);
}

// Descriptor of an MN-major SW128 operand at `addr` whose successive 64-element column blocks
// are `block_bytes` apart.
FMLA_DEVICE u64 desc_mn_major_sw128(u32 addr, u32 block_bytes) {
    return static_cast<u64>((addr & 0x3FFFF) >> 4) | (static_cast<u64>((block_bytes & 0x3FFFF) >> 4) << 16) |
           (static_cast<u64>(1024 >> 4) << 32) | (static_cast<u64>(1) << 62);
}

FMLA_DEVICE void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }

// Pins accumulator registers in program order: the compiler may not move reads or writes of
// `d` across this point. Call it after wgmma_wait (before the accumulators are read) and before
// issuing wgmma on accumulators that other instructions wrote; the wait itself names no
// registers, so without it arithmetic on the accumulators can be hoisted above the wait, and
// ptxas then serializes every wgmma.
template <int N>
FMLA_DEVICE void wgmma_fence_operands(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
FMLA_DEVICE void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }

template <int N>
FMLA_DEVICE void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

// The register lists of the accumulators (generated: %0 … %31, %0 … %63 and %0 … %127).
#define FMLA_WGMMA_D32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define FMLA_WGMMA_D64 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define FMLA_WGMMA_D128 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"

// The element type's name in wgmma's type suffix.
template <typename T> struct WgmmaElement;
template <> struct WgmmaElement<bf16> { static constexpr bool is_bf16 = true; };
template <> struct WgmmaElement<fp16> { static constexpr bool is_bf16 = false; };

// D(64×64, fp32) = A(64×16) · B(16×64) + (accumulate ? D : 0); A and B K-major in shared
// memory. kOffA / kOffB (bytes, multiples of 16) are added to the descriptors' start addresses
// inside the instruction's asm, so the compiler cannot hoist one descriptor per k-step out of
// a loop (which costs two registers each) and ptxas folds them into immediates.
template <typename T, int kOffA = 0, int kOffB = 0>
FMLA_DEVICE void wgmma_m64n64k16_ss(float (&d)[32], u64 desc_a, u64 desc_b, int accumulate) {
    static_assert(kOffA % 16 == 0 && kOffB % 16 == 0, "descriptor offsets are whole 16-byte units");
    if constexpr (WgmmaElement<T>::is_bf16) {
        asm volatile(
            "{\n\t.reg .pred p;\n\t.reg .b64 da, db;\n\t"
            "setp.ne.b32 p, %34, 0;\n\t"
            "add.s64 da, %32, %35;\n\t"
            "add.s64 db, %33, %36;\n\t"
            "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " FMLA_WGMMA_D32 ", da, db, p, 1, 1, 0, 0;\n\t}"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
            : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kOffA / 16), "n"(kOffB / 16));
    } else {
        asm volatile(
            "{\n\t.reg .pred p;\n\t.reg .b64 da, db;\n\t"
            "setp.ne.b32 p, %34, 0;\n\t"
            "add.s64 da, %32, %35;\n\t"
            "add.s64 db, %33, %36;\n\t"
            "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " FMLA_WGMMA_D32 ", da, db, p, 1, 1, 0, 0;\n\t}"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
            : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kOffA / 16), "n"(kOffB / 16));
    }
}

// D(64×128, fp32) = A(64×16) · B(16×128) + (accumulate ? D : 0); A K-major, B MN-major. Two of
// these cover 256 output columns with 64 accumulator registers per instruction, which ptxas can
// compile under a 128-register entry cap (a 512-thread CTA); one m64n256 cannot.
template <typename T, int kOffA = 0, int kOffB = 0>
FMLA_DEVICE void wgmma_m64n128k16_ss_tb(float (&d)[64], u64 desc_a, u64 desc_b, int accumulate) {
    static_assert(kOffA % 16 == 0 && kOffB % 16 == 0, "descriptor offsets are whole 16-byte units");
    if constexpr (WgmmaElement<T>::is_bf16) {
        asm volatile(
            "{\n\t.reg .pred p;\n\t.reg .b64 da, db;\n\t"
            "setp.ne.b32 p, %66, 0;\n\t"
            "add.s64 da, %64, %67;\n\t"
            "add.s64 db, %65, %68;\n\t"
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FMLA_WGMMA_D64 ", da, db, p, 1, 1, 0, 1;\n\t}"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
            : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kOffA / 16), "n"(kOffB / 16));
    } else {
        asm volatile(
            "{\n\t.reg .pred p;\n\t.reg .b64 da, db;\n\t"
            "setp.ne.b32 p, %66, 0;\n\t"
            "add.s64 da, %64, %67;\n\t"
            "add.s64 db, %65, %68;\n\t"
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " FMLA_WGMMA_D64 ", da, db, p, 1, 1, 0, 1;\n\t}"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
            : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kOffA / 16), "n"(kOffB / 16));
    }
}

// D(64×256, fp32) = A(64×16) · B(16×256) + (accumulate ? D : 0); A K-major, B MN-major
// ("transposed": the rows of B's shared tile are K indices). Needs about 154 registers for the
// one instruction: only for CTAs of at most 384 threads.
template <typename T, int kOffA = 0, int kOffB = 0>
FMLA_DEVICE void wgmma_m64n256k16_ss_tb(float (&d)[128], u64 desc_a, u64 desc_b, int accumulate) {
    static_assert(kOffA % 16 == 0 && kOffB % 16 == 0, "descriptor offsets are whole 16-byte units");
    if constexpr (WgmmaElement<T>::is_bf16) {
        asm volatile(
            "{\n\t.reg .pred p;\n\t.reg .b64 da, db;\n\t"
            "setp.ne.b32 p, %130, 0;\n\t"
            "add.s64 da, %128, %131;\n\t"
            "add.s64 db, %129, %132;\n\t"
            "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " FMLA_WGMMA_D128 ", da, db, p, 1, 1, 0, 1;\n\t}"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
              "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
              "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
              "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
              "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
              "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
              "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
              "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
              "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
            : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kOffA / 16), "n"(kOffB / 16));
    } else {
        asm volatile(
            "{\n\t.reg .pred p;\n\t.reg .b64 da, db;\n\t"
            "setp.ne.b32 p, %130, 0;\n\t"
            "add.s64 da, %128, %131;\n\t"
            "add.s64 db, %129, %132;\n\t"
            "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 " FMLA_WGMMA_D128 ", da, db, p, 1, 1, 0, 1;\n\t}"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
              "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
              "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
              "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
              "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
              "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
              "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
              "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
              "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
            : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kOffA / 16), "n"(kOffB / 16));
    }
}

#undef FMLA_WGMMA_D32
#undef FMLA_WGMMA_D64
#undef FMLA_WGMMA_D128

}  // namespace fmla::sm90
