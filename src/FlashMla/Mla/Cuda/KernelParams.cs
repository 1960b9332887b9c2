using System.Runtime.InteropServices;
using FlashMla.Cuda;

namespace FlashMla.Mla.Cuda;

// The C# mirrors of the decode kernels' structs in kernels/include/decode_abi.cuh, field for field
// and with the same names (C's snake_case in PascalCase). The tests compare each with the layout
// the modules export (fmla_abi_<Name>); KernelEntry.Launch checks the name and size against the
// kernel's descriptor, and CudaKernel.Launch the size against the driver's parameter size.

/// <summary><c>ScheduleParams</c> of <c>mla_decode_schedule</c> (decode_schedule.cu).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ScheduleParams
{
    /// <summary>const int* [batch].</summary>
    public ulong CacheSeqlens;

    /// <summary>int* [num_parts · 8].</summary>
    public ulong Parts;

    /// <summary>int* [batch + 1].</summary>
    public ulong NumSplits;

    /// <summary>int* [4], the error record.</summary>
    public ulong Error;

    public int Batch;
    public int NumParts;

    /// <summary>max_blocks_per_seq · page_block_size, in tokens.</summary>
    public int Capacity;

    public int Pad;
}

/// <summary><c>DecodeParams</c>, the parameters every decode path's split-KV kernels take (or begin with).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DecodeParams
{
    public ulong Q;
    public ulong KCache;
    public ulong BlockTable;
    public ulong CacheSeqlens;
    public ulong Output;
    public ulong Lse;

    /// <summary>float [slots, h_kv, rows, 512].</summary>
    public ulong OAccum;

    /// <summary>float [slots, h_kv, rows], log2 domain.</summary>
    public ulong LseAccum;

    public ulong Parts;
    public ulong NumSplits;
    public ulong Error;

    /// <summary>MergeCounters* [batch, h_kv, row tiles] of the in-kernel merge; 0 when decode_combine.cu merges.</summary>
    public ulong Merge;

    public long QBatchStride;
    public long QSeqStride;
    public long QHeadStride;
    public long KBlockStride;
    public long KRowStride;
    public long KHeadStride;
    public long BtBatchStride;
    public long OBatchStride;
    public long OSeqStride;
    public long OHeadStride;
    public long LseBatchStride;
    public long LseHeadStride;

    public int Batch;
    public int SQ;
    public int HQ;
    public int HKv;

    /// <summary>h_q / h_kv.</summary>
    public int Group;

    /// <summary>s_q · group.</summary>
    public int Rows;

    /// <summary>576 or 512 (QK dims).</summary>
    public int HeadDim;

    public int PageBlockSize;
    public int NumBlocks;
    public int MaxBlocksPerSeq;
    public int Causal;
    public int NumParts;

    /// <summary>softmax_scale · log2(e).</summary>
    public float ScaleLog2;

    public int Pad;
}

/// <summary><c>MergeCounters</c>: the arrival counters of one (request, KV head, row tile) of the in-kernel merge (split_merge.cuh).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct MergeCounters
{
    /// <summary>Pieces whose partial result is written.</summary>
    public int Arrived;

    /// <summary>Pieces whose CTA has merged its share.</summary>
    public int Departed;
}

/// <summary><c>CombineParams</c> of <c>mla_decode_combine_bf16/fp16</c> (decode_combine.cu).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CombineParams
{
    public ulong OAccum;
    public ulong LseAccum;
    public ulong NumSplits;
    public ulong Output;
    public ulong Lse;

    public long OBatchStride;
    public long OSeqStride;
    public long OHeadStride;
    public long LseBatchStride;
    public long LseHeadStride;

    public int Batch;
    public int SQ;
    public int HQ;
    public int HKv;
    public int Group;
    public int Rows;

    /// <summary>The plan's part count (slots = batch + num_parts bound the split slots).</summary>
    public int NumParts;

    public int Pad;

    /// <summary>The combine of a decode: the workspace, output, LSE and shape of its parameters.</summary>
    /// <param name="decode">The decode's parameters.</param>
    /// <returns>The combine's parameters.</returns>
    public static CombineParams Of(in DecodeParams decode) => new()
    {
        OAccum = decode.OAccum,
        LseAccum = decode.LseAccum,
        NumSplits = decode.NumSplits,
        Output = decode.Output,
        Lse = decode.Lse,
        OBatchStride = decode.OBatchStride,
        OSeqStride = decode.OSeqStride,
        OHeadStride = decode.OHeadStride,
        LseBatchStride = decode.LseBatchStride,
        LseHeadStride = decode.LseHeadStride,
        Batch = decode.Batch,
        SQ = decode.SQ,
        HQ = decode.HQ,
        HKv = decode.HKv,
        Group = decode.Group,
        Rows = decode.Rows,
        NumParts = decode.NumParts,
    };
}

/// <summary>
/// <c>ErrorRecord</c>: the error record of guarded inputs (int32[4]) that the kernels fill with
/// atomics and the host checks at the synchronization point.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ErrorRecord
{
    /// <summary>The <see cref="Flags"/> bit of a launch with too little dynamic shared memory (<c>kErrorSharedMemory</c>); bits 0 and 1 are <see cref="MlaInputError"/> values.</summary>
    public const int SharedMemoryFlag = 4;

    /// <summary>The <see cref="Flags"/> bit of an in-kernel merge that gave up waiting for a split request's pieces (<c>kErrorMerge</c>).</summary>
    public const int MergeFlag = 8;

    /// <summary>ErrorFlag bits.</summary>
    public int Flags;

    /// <summary>The lowest request with a bad length, or <see cref="int.MaxValue"/>.</summary>
    public int BadSeqlenRequest;

    /// <summary>The lowest request with a bad block id, or <see cref="int.MaxValue"/>.</summary>
    public int BadBlockRequest;

    /// <summary>The most dynamic shared memory a short launch needed, or 0.</summary>
    public int SharedMemoryNeeded;

    /// <summary>The value the host initialises the record with: no flags, no offending request.</summary>
    public static ErrorRecord Clean => new() { BadSeqlenRequest = int.MaxValue, BadBlockRequest = int.MaxValue };
}

/// <summary>
/// <c>DecodeParamsSm90</c> of <c>mla_decode_sm90_*</c> (decode_sm90.cu): the common parameters,
/// then the K cache's TMA descriptor at byte 256 (its C type is 64-byte aligned, so is this struct
/// in the kernel's parameter space).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DecodeParamsSm90
{
    public DecodeParams D;

    /// <summary>A copy of the tensor map in global memory to read instead of <see cref="KMap"/>; 0: read KMap in place.</summary>
    public ulong KMapGlobal;

    /// <summary>4-D (column, slot in page, KV head, block), box 64 × 64 × 1 × 1, 128-byte swizzle.</summary>
    public TensorMap KMap;
}
