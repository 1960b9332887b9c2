using System.Runtime.InteropServices;

namespace FlashMla.Mla.Cuda;

// The by-value parameter structs of the decode kernels, field for field as the C structs of
// docs/architecture.md ("Kernel ABI"): 64-bit pointers (ulong), then 64-bit strides (long), then
// 32-bit fields (int, float); padded to 8 bytes. Strides are in elements. CudaKernel.Launch checks
// each struct's size against the kernel's parameter size when the driver reports it (CUDA ≥ 12.4).

/// <summary><c>ScheduleParams</c> of <c>mla_decode_schedule</c> (decode_schedule.cu). 48 bytes.</summary>
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

/// <summary><c>DecodeParams</c> of <c>mla_decode_splitkv_bf16/fp16</c> (decode_splitkv.cu). 240 bytes.</summary>
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
    public int SeqQ;
    public int HeadsQ;
    public int HeadsKv;

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

/// <summary><c>CombineParams</c> of <c>mla_decode_combine_bf16/fp16</c> (decode_combine.cu). 112 bytes.</summary>
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
    public int SeqQ;
    public int HeadsQ;
    public int HeadsKv;
    public int Group;
    public int Rows;

    /// <summary>The plan's part count (slots = batch + num_parts bound the split slots).</summary>
    public int NumParts;

    public int Pad;
}
