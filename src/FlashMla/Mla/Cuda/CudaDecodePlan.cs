using System.Globalization;
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
/// graph; it must not be used by two streams at once.
/// </remarks>
public sealed class CudaDecodePlan : IDisposable
{
    /// <summary>The initial value of the error record: no flags, no offending request.</summary>
    internal static readonly int[] CleanErrorRecord = [0, int.MaxValue, int.MaxValue, 0];

    private int _disposed;

    internal CudaDecodePlan(CudaContext context, int batch, int queryLength, int queryHeads, int kvHeads, int numParts)
    {
        Context = context;
        Batch = batch;
        QueryLength = queryLength;
        QueryHeads = queryHeads;
        KvHeads = kvHeads;
        NumParts = numParts;
        var rows = (long)RowsPerKvHead;
        var slots = (long)batch + numParts;
        var buffers = new List<IDisposable>();
        try
        {
            Parts = Track(buffers, DeviceBuffer<int>.Allocate(context, (long)numParts * 8));
            NumSplits = Track(buffers, DeviceBuffer<int>.Allocate(context, (long)batch + 1));
            ErrorRecord = Track(buffers, DeviceBuffer<int>.Allocate(context, 4));
            OAccum = Track(buffers, DeviceBuffer<float>.Allocate(context, checked(slots * kvHeads * rows * MlaDecodeValidation.SupportedHeadDimV)));
            LseAccum = Track(buffers, DeviceBuffer<float>.Allocate(context, checked(slots * kvHeads * rows)));
            ErrorRecord.CopyFrom(CleanErrorRecord);
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

    /// <summary>b.</summary>
    public int Batch { get; }

    /// <summary>s_q.</summary>
    public int QueryLength { get; }

    /// <summary>h_q.</summary>
    public int QueryHeads { get; }

    /// <summary>h_kv.</summary>
    public int KvHeads { get; }

    /// <summary>h_q / h_kv.</summary>
    public int Group => QueryHeads / KvHeads;

    /// <summary>Query rows per KV head: s_q · h_q / h_kv.</summary>
    public int RowsPerKvHead => QueryLength * Group;

    /// <summary>The number of parts (the decode grid's z extent).</summary>
    public int NumParts { get; }

    /// <summary>Device bytes held by the plan.</summary>
    public long WorkspaceBytes => Parts.SizeInBytes + NumSplits.SizeInBytes + ErrorRecord.SizeInBytes + OAccum.SizeInBytes + LseAccum.SizeInBytes;

    /// <summary>Whether <see cref="CudaMlaDecoder.UpdatePlan"/> has been enqueued at least once.</summary>
    public bool IsScheduled { get; internal set; }

    /// <summary>The KV capacity in tokens (max_blocks_per_seq · page_block_size) the last schedule was computed for.</summary>
    public long ScheduledCapacity { get; internal set; }

    /// <summary>num_blocks of the cache the last decode used (for error messages; 0 before any decode).</summary>
    internal int LastNumBlocks { get; set; }

    /// <summary>Whether the plan was disposed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    internal DeviceBuffer<int> Parts { get; }

    internal DeviceBuffer<int> NumSplits { get; }

    internal DeviceBuffer<int> ErrorRecord { get; }

    internal DeviceBuffer<float> OAccum { get; }

    internal DeviceBuffer<float> LseAccum { get; }

    /// <summary>The stream the last decoder work on this plan was enqueued on, while its errors are unchecked (0: none).</summary>
    internal nint PendingStream { get; set; }

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
        var raw = new int[NumParts * 8];
        Parts.CopyTo(raw, stream);
        var numSplits = new int[Batch + 1];
        NumSplits.CopyTo(numSplits, stream);
        var parts = new DecodePart[NumParts];
        for (var i = 0; i < NumParts; i++)
        {
            var r = raw.AsSpan(i * 8, 8);
            parts[i] = new DecodePart(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
        }

        return (parts, numSplits);
    }

    /// <summary>Frees the workspace. Idempotent.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Parts.Dispose();
        NumSplits.Dispose();
        ErrorRecord.Dispose();
        OAccum.Dispose();
        LseAccum.Dispose();
    }

    /// <summary>Formats as "plan b=… s_q=… h_q=… h_kv=… parts=…".</summary>
    /// <returns>The text.</returns>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"plan b={Batch} s_q={QueryLength} h_q={QueryHeads} h_kv={KvHeads} parts={NumParts}");

    private static DeviceBuffer<TE> Track<TE>(List<IDisposable> list, DeviceBuffer<TE> buffer)
        where TE : unmanaged
    {
        list.Add(buffer);
        return buffer;
    }
}
