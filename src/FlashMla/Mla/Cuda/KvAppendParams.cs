using System.Runtime.InteropServices;

namespace FlashMla.Mla.Cuda;

// The C# mirrors of the append kernel's structs in kernels/include/decode_abi.cuh
// (kv_cache_append.cu), field for field; the ABI tests compare them with the exported layouts.

/// <summary><c>KvAppendParams</c> of <c>mla_kv_cache_append</c>: sources in two pieces, slots, cache, error record.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct KvAppendParams
{
    /// <summary>Columns [0, 512) of each row.</summary>
    public ulong Nope;

    /// <summary>Columns [512, head_dim) of each row (for a whole latent: its address + 512 elements).</summary>
    public ulong Rope;

    /// <summary>const int* [n].</summary>
    public ulong SlotMapping;

    public ulong KCache;

    /// <summary><see cref="KvAppendErrorRecord"/>*.</summary>
    public ulong Error;

    public long NopeTokenStride;
    public long NopeHeadStride;
    public long RopeTokenStride;
    public long RopeHeadStride;
    public long SlotStride;
    public long KBlockStride;
    public long KRowStride;
    public long KHeadStride;

    public int NumTokens;
    public int HKv;

    /// <summary>576 or 512.</summary>
    public int HeadDim;

    public int PageBlockSize;
    public int NumBlocks;
    public int Pad;
}

/// <summary>
/// <c>KvAppendErrorRecord</c>: the append's record of bad slots, filled by the kernel with atomics
/// and checked by the host at the synchronization point.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct KvAppendErrorRecord
{
    /// <summary>The flag of a bad slot (<c>kErrorSlot</c>).</summary>
    public const int SlotFlag = (int)MlaInputError.SlotOutOfRange;

    /// <summary>(token &lt;&lt; 32) | (uint)slot of the lowest offending token; <see cref="ulong.MaxValue"/>: none.</summary>
    public ulong FirstBad;

    /// <summary>Error flags.</summary>
    public int Flags;

    /// <summary>Tokens with a bad slot.</summary>
    public int BadTokens;

    /// <summary>The value the host initialises the record with.</summary>
    public static KvAppendErrorRecord Clean => new() { FirstBad = ulong.MaxValue };

    /// <summary>The lowest offending token.</summary>
    public readonly int FirstBadToken => (int)(FirstBad >> 32);

    /// <summary>Its slot.</summary>
    public readonly int FirstBadSlot => unchecked((int)(uint)FirstBad);
}
