// cp_async.cuh: asynchronous global→shared copies (sm_80 cp.async) in 16-byte chunks.
#pragma once
#include "base.cuh"

namespace fmla {

// Copies 16 bytes from global `src` to shared `dst`; when `valid` is false nothing is read and
// the 16 destination bytes are zero-filled (src-size 0).
FMLA_DEVICE void cp_async_16(u32 dst, const void* src, bool valid) {
    int src_size = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_size)
                 : "memory");
}

FMLA_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
FMLA_DEVICE void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

}  // namespace fmla
