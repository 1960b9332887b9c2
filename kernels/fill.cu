// targets: sm_80 sm_90a
// fill.cu: flashmla_fill_u32 writes one 32-bit pattern over a buffer.
//
// Used to poison outputs before a run (and so to prove the PTX → driver JIT → launch path).
// Schedule: a grid-stride loop; every thread stores dst[i] for i ≡ global thread id (mod the
// grid's thread count). No shared memory, no barriers.
#include "decode_abi.cuh"

FMLA_MODULE_ABI();
FMLA_EXPORT_ABI(FillParams);

FMLA_KERNEL(flashmla_fill_u32, FillParams, fmla::kernel_desc(256)) {
    using namespace fmla;
    u32* dst = reinterpret_cast<u32*>(p.dst);
    u64 stride = static_cast<u64>(block_dim_x()) * grid_dim_x();
    for (u64 i = static_cast<u64>(block_idx_x()) * block_dim_x() + thread_idx(); i < p.count; i += stride) {
        dst[i] = p.value;
    }
}
