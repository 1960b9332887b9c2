// probe_timeline.cuh: a development probe of where a decode CTA's time goes. Built only into the
// timing probes of scripts/build-micro.sh (-DFMLA_PROBE_TIMELINE). Kernels write
// FMLA_PROBE_STAMP(condition, stamp): with the probe it writes %globaltimer (ns) to entry `stamp` of the
// calling CTA's row of fmla_probe_timeline, which bench/micro/check_sm90.py reads back; in the
// library's kernels it expands to nothing.
#pragma once
#include "base.cuh"

namespace fmla {

// The stamps (entries of a CTA's row); bench/micro/check_sm90.py reads their names from this enum. The
// wgmma kernel writes all of them, the mma.sync kernels those without a role of their own (no Q
// loader, no K producer), split_merge.cuh the merge's.
enum ProbeStamp : int {
    kStampEntry,         // thread 0 at the kernel's start
    kStampPrologueDone,  // after decode_prologue (PDL wait included)
    kStampQLanded,       // wgmma: Q of the CTA's (last) piece in shared memory
    kStampQSeen,         // wgmma: the score warpgroup saw it
    kStampFirstQkDone,   // the piece's first block's scores
    kStampFirstPOut,     // its softmax and P written
    kStampFirstPvDone,   // its P·V
    kStampLastPOut,      // wgmma: the piece's last P written
    kStampLastPvDone,    // the piece's last P·V
    kStampStored,        // the piece's output or partial stored
    kStampEnd,           // the CTA's end (after the merge)
    kStampFirstKIssued,  // wgmma: the first block's TMA loads issued
    kStampAllKIssued,    // wgmma: every block's issued
    kStampArrived,       // merge: this CTA's pieces published
    kStampAllArrived,    // merge: every piece of the request arrived
    kStampMerged,        // merge: this CTA's share merged
    kStampFirstPiece,    // wgmma: the K producer has its first piece (the walk's reads done)
    kStampQIssued,       // wgmma: the first Q loader's copies issued
    kStampFirstBlockId,  // wgmma: the K producer has its first block's id (block table read)
    kProbeStamps
};

// CTAs the probe's table holds.
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
