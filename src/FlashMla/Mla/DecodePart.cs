using System.Runtime.InteropServices;

namespace FlashMla.Mla;

/// <summary>
/// The work of one decode part (one CTA along the grid's z axis on the GPU): a contiguous run of
/// KV blocks that starts at block <see cref="BeginBlock"/> of request <see cref="BeginRequest"/> and
/// ends before block <see cref="EndBlock"/> of request <see cref="EndRequest"/>. Its memory layout
/// (8 × int32, 32 bytes) is identical to the device record the kernels read.
/// </summary>
/// <param name="BeginRequest">The first request; the batch size when the part has no work.</param>
/// <param name="EndRequest">The last request (inclusive).</param>
/// <param name="BeginBlock">The first block (inclusive) within <see cref="BeginRequest"/>.</param>
/// <param name="EndBlock">The end block (exclusive) within <see cref="EndRequest"/>.</param>
/// <param name="BeginSplit">Which piece of <see cref="BeginRequest"/> this part holds (its split slot
/// is <c>num_splits[BeginRequest] + BeginSplit</c>).</param>
/// <param name="FirstRequestIsSplit">1 when the piece of <see cref="BeginRequest"/> is one of several.</param>
/// <param name="LastRequestIsSplit">1 when the piece of <see cref="EndRequest"/> is one of several.</param>
/// <param name="Padding">Always 0.</param>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct DecodePart(
    int BeginRequest,
    int EndRequest,
    int BeginBlock,
    int EndBlock,
    int BeginSplit,
    int FirstRequestIsSplit,
    int LastRequestIsSplit,
    int Padding);
