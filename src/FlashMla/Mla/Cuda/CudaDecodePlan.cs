using FlashMla.Cuda;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// The device workspace of CUDA decodes of one shape (b, s_q, h_q, h_kv): the split-KV schedule
/// (parts, num_splits), the partial results of split requests, and the error record the kernels
/// report bad inputs in. Create it with <see cref="CudaMlaDecoder.CreatePlan"/>, fill the schedule
/// with <see cref="CudaMlaDecoder.UpdatePlan"/> whenever the sequence lengths change, then decode.
/// </summary>
/// <remarks>
/// A plan may be reused for any number of decodes of its shape, including inside a captured CUDA
/// graph, by the decoder that created it; it must not be used by two streams at once. What it was
/// updated for and which of its work is unchecked is recorded by that decoder.
/// </remarks>
public sealed class CudaDecodePlan : MlaDecodePlan, IDisposable
{
    private readonly CudaPlanBook _book;
    private int _disposed;

    internal CudaDecodePlan(CudaContext context, CudaPlanBook book, int batch, int queryLength, int queryHeads, int kvHeads, int numParts)
        : base(batch, queryLength, queryHeads, kvHeads, numParts)
    {
        Context = context;
        _book = book;
        var rows = (long)RowsPerKvHead;
        var slots = (long)batch + numParts;
        var buffers = new List<IDisposable>();
        try
        {
            Parts = Track(buffers, DeviceBuffer<DecodePart>.Allocate(context, numParts));
            NumSplits = Track(buffers, DeviceBuffer<int>.Allocate(context, (long)batch + 1));
            Errors = Track(buffers, DeviceBuffer<ErrorRecord>.Allocate(context, 1));
            OAccum = Track(buffers, DeviceBuffer<float>.Allocate(context, checked(slots * kvHeads * SplitOutputRows(RowsPerKvHead) * MlaDecodeValidation.SupportedHeadDimV)));
            LseAccum = Track(buffers, DeviceBuffer<float>.Allocate(context, checked(slots * kvHeads * rows)));
            Merge = Track(buffers, DeviceBuffer<MergeCounters>.Allocate(context, checked(batch * (long)kvHeads * MergeRowTiles(RowsPerKvHead))));
            Errors.CopyFrom([ErrorRecord.Clean]);
            Merge.CopyFrom(new MergeCounters[checked((int)Merge.Length)]);
        }
        catch
        {
            foreach (var b in buffers)
            {
                b.Dispose();
            }

            throw;
        }
    }

    /// <summary>The context.</summary>
    public CudaContext Context { get; }

    /// <summary>Device bytes held by the plan.</summary>
    public long WorkspaceBytes => Parts.SizeInBytes + NumSplits.SizeInBytes + Errors.SizeInBytes + OAccum.SizeInBytes + LseAccum.SizeInBytes + Merge.SizeInBytes;

    /// <summary>Whether the plan was disposed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    internal DeviceBuffer<DecodePart> Parts { get; }

    internal DeviceBuffer<int> NumSplits { get; }

    /// <summary>The error record of guarded inputs (one <see cref="ErrorRecord"/>).</summary>
    internal DeviceBuffer<ErrorRecord> Errors { get; }

    internal DeviceBuffer<float> OAccum { get; }

    internal DeviceBuffer<float> LseAccum { get; }

    /// <summary>The in-kernel merge's counters, one <see cref="MergeCounters"/> per (request, KV head, row tile of <see cref="MinRowsPerCta"/> rows); zero between decodes.</summary>
    internal DeviceBuffer<MergeCounters> Merge { get; }

    /// <summary>The split workspace keeps its output rows in groups of this many (<c>kSplitRowGroup</c>), the order of the kernels' accumulators.</summary>
    internal const int SplitRowGroup = 8;

    /// <summary>Rows of one (slot, KV head) of <see cref="OAccum"/>: the rows rounded up to whole <see cref="SplitRowGroup"/> groups.</summary>
    /// <param name="rowsPerKvHead">s_q · h_q / h_kv.</param>
    /// <returns>The padded row count.</returns>
    internal static long SplitOutputRows(int rowsPerKvHead) => ((long)rowsPerKvHead + SplitRowGroup - 1) / SplitRowGroup * SplitRowGroup;

    /// <summary>The fewest query rows a decode CTA takes (<c>kMinRowsPerCta</c>), which sizes <see cref="Merge"/>.</summary>
    internal const int MinRowsPerCta = 16;

    /// <summary>Row tiles per KV head the merge counters cover.</summary>
    /// <param name="rowsPerKvHead">s_q · h_q / h_kv.</param>
    /// <returns>ceil(rows / <see cref="MinRowsPerCta"/>).</returns>
    internal static long MergeRowTiles(int rowsPerKvHead) => ((long)rowsPerKvHead + MinRowsPerCta - 1) / MinRowsPerCta;

    /// <summary>Zeroes the merge counters (after a merge gave up and left them counting).</summary>
    /// <param name="stream">The stream.</param>
    internal void ResetMergeCounters(CudaStream stream)
    {
        Merge.CopyFromAsync(new MergeCounters[checked((int)Merge.Length)], stream);
        stream.Synchronize();
    }

    /// <summary>The decoder's record of this plan.</summary>
    internal CudaPlanBook Book => _book;

    private protected override PlanGeometry? Geometry => _book.GeometryOf(this);

    /// <summary>
    /// Reads the schedule the schedule kernel wrote, after waiting for <paramref name="stream"/>
    /// (diagnostics and tests; compare with <see cref="DecodeSchedule.Compute"/>).
    /// </summary>
    /// <param name="stream">The stream the plan was updated on.</param>
    /// <returns>The part records and the num_splits prefix sums.</returns>
    public (DecodePart[] Parts, int[] NumSplits) ReadSchedule(CudaStream stream)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentNullException.ThrowIfNull(stream);
        var parts = new DecodePart[NumParts];
        Parts.CopyTo(parts, stream);
        var numSplits = new int[Batch + 1];
        NumSplits.CopyTo(numSplits, stream);
        return (parts, numSplits);
    }

    /// <summary>Frees the workspace. Idempotent.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _book.Forget(this);
        Parts.Dispose();
        NumSplits.Dispose();
        Errors.Dispose();
        OAccum.Dispose();
        LseAccum.Dispose();
        Merge.Dispose();
    }

    private static DeviceBuffer<TE> Track<TE>(List<IDisposable> list, DeviceBuffer<TE> buffer)
        where TE : unmanaged
    {
        list.Add(buffer);
        return buffer;
    }
}
