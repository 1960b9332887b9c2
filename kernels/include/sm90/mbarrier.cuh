// mbarrier.cuh: shared-memory transaction barriers (sm_90): initialisation, arrival with or
// without an expected transaction byte count, and parity waits.
//
// A barrier is a 64-bit word in shared memory, addressed here by its shared-window address
// (smem_addr). Each completed phase flips its parity; a waiter asks for the phase of a given
// parity. A freshly initialised barrier is in phase 0, so waiting for parity 1 returns at once:
// producers of a ring start by waiting for parity 1 on their "empty" barriers.
#pragma once
#include "../base.cuh"

namespace fmla::sm90 {

FMLA_DEVICE void mbarrier_init(u32 bar, int arrivals) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(arrivals) : "memory");
}

// Makes barrier initialisation visible to the async proxy (TMA) and to other threads; follow it
// with a CTA barrier before any thread uses the barriers.
FMLA_DEVICE void mbarrier_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }

FMLA_DEVICE void mbarrier_arrive(u32 bar) {
    asm volatile(
        "{\n\t.reg .b64 state;\n\t"
        "mbarrier.arrive.shared::cta.b64 state, [%0];\n\t}" ::"r"(bar)
        : "memory");
}

// Arrives and adds `bytes` to the transaction count the current phase waits for (the TMA copies
// that signal this barrier complete those bytes).
FMLA_DEVICE void mbarrier_arrive_expect_tx(u32 bar, u32 bytes) {
    asm volatile(
        "{\n\t.reg .b64 state;\n\t"
        "mbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n\t}" ::"r"(bar),
        "r"(bytes)
        : "memory");
}

// True when the phase of parity `parity` has completed (a bounded hardware wait, may return false).
FMLA_DEVICE bool mbarrier_try_wait(u32 bar, u32 parity) {
    u32 done;
    asm volatile(
        "{\n\t.reg .pred p;\n\t"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
        "selp.u32 %0, 1, 0, p;\n\t}"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
    return done != 0;
}

// Blocks until the phase of parity `parity` has completed. The retry loop is inside one asm
// statement, so that the compiler sees straight-line code (a loop it cannot prove uniform across
// the warpgroup would make ptxas serialize the wgmma around it).
FMLA_DEVICE void mbarrier_wait(u32 bar, u32 parity) {
    asm volatile(
        "{\n\t.reg .pred p;\n"
        "fmla_wait_%=:\n\t"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
        "@!p bra.uni fmla_wait_%=;\n\t}" ::"r"(bar),
        "r"(parity)
        : "memory");
}

// mbarrier_arrive by the threads where `pred` holds, as one predicated instruction (no branch).
FMLA_DEVICE void mbarrier_arrive_if(u32 bar, bool pred) {
    asm volatile(
        "{\n\t.reg .pred p;\n\t.reg .b64 state;\n\t"
        "setp.ne.b32 p, %1, 0;\n\t"
        "@p mbarrier.arrive.shared::cta.b64 state, [%0];\n\t}" ::"r"(bar),
        "r"(static_cast<int>(pred))
        : "memory");
}

}  // namespace fmla::sm90
