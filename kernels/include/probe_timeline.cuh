// probe_timeline.cuh: a development probe of where a decode CTA's time goes. Built only into the
// timing probes of scripts/build-micro.sh (-DFMLA_PROBE_TIMELINE). Kernels write
// FMLA_PROBE_STAMP(condition, i): with the probe it writes %globaltimer (ns) to entry i of the
// calling CTA's row of fmla_probe_timeline, which bench/micro/check_sm90.py reads back; in the
// library's kernels it expands to nothing.
#pragma once
#include "base.cuh"

namespace fmla {

// Stamps per CTA, and CTAs the probe's table holds.
constexpr int kProbeStamps = 16;
constexpr int kProbeCtas = 1024;

#ifdef FMLA_PROBE_TIMELINE
extern "C" __attribute__((device)) u64 fmla_probe_timeline[kProbeCtas * kProbeStamps];
__attribute__((device)) u64 fmla_probe_timeline[kProbeCtas * kProbeStamps];

FMLA_DEVICE void probe_stamp(int i) {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    const int cta = block_idx_x() + grid_dim_x() * (block_idx_y() + __nvvm_read_ptx_sreg_nctaid_y() * block_idx_z());
    if (cta < kProbeCtas) fmla_probe_timeline[cta * kProbeStamps + i] = t;
}
#define FMLA_PROBE_STAMP(condition, i) \
    do {                               \
        if (condition) ::fmla::probe_stamp(i); \
    } while (0)
#else
#define FMLA_PROBE_STAMP(condition, i) ((void)0)
#endif

}  // namespace fmla
