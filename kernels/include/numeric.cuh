// numeric.cuh: bf16 and fp16 element types and their conversions.
//
// Each element type is a 16-bit storage struct plus a traits struct `ElemOps<T>` that packs two
// floats into one 32-bit register (round to nearest even, as cvt.rn does) and names the
// mma.sync operand type, and gives its ElementCode.
#pragma once
#include "base.cuh"
#include "kernel_desc.cuh"

namespace fmla {

struct bf16 { u16 bits; };
struct fp16 { u16 bits; };

template <typename T> struct ElemOps;

template <> struct ElemOps<bf16> {
    static constexpr int kCode = kElemBf16;  // its ElementCode
    // Packs (lo, hi) into a bf16x2 register: lo in the low half.
    static FMLA_DEVICE u32 pack2(float lo, float hi) {
        u32 r;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
    static FMLA_DEVICE u16 from_float(float v) { return static_cast<u16>(pack2(v, 0.0f) & 0xffffu); }
    static FMLA_DEVICE float to_float(u16 b) { return __builtin_bit_cast(float, static_cast<u32>(b) << 16); }
};

template <> struct ElemOps<fp16> {
    static constexpr int kCode = kElemFp16;
    static FMLA_DEVICE u32 pack2(float lo, float hi) {
        u32 r;
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
    static FMLA_DEVICE u16 from_float(float v) { return static_cast<u16>(pack2(v, 0.0f) & 0xffffu); }
    static FMLA_DEVICE float to_float(u16 h) {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
        return f;
    }
};

}  // namespace fmla
