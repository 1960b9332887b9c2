using System.Globalization;
using FlashMla.Cuda;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// A decoder's record of its plans, the one owner of their bookkeeping: the page geometry each
/// plan was last updated for, the cache size its last decode used (for messages), and which
/// stream holds work on it whose error record is not checked yet. It also checks and clears the
/// error records at the synchronization points.
/// </summary>
internal sealed class CudaPlanBook
{
    private readonly Lock _lock = new();
    private readonly Dictionary<CudaDecodePlan, Entry> _entries = [];

    /// <summary>Starts the record of a new plan.</summary>
    public void Add(CudaDecodePlan plan)
    {
        lock (_lock)
        {
            _entries.Add(plan, new Entry());
        }
    }

    /// <summary>Drops a disposed plan.</summary>
    public void Forget(CudaDecodePlan plan)
    {
        lock (_lock)
        {
            _entries.Remove(plan);
        }
    }

    /// <summary>Whether the plan is one of this decoder's live plans.</summary>
    public bool Owns(CudaDecodePlan plan)
    {
        lock (_lock)
        {
            return _entries.ContainsKey(plan);
        }
    }

    /// <summary>The geometry of the plan's last update, or null.</summary>
    public PlanGeometry? GeometryOf(CudaDecodePlan plan)
    {
        lock (_lock)
        {
            return _entries.TryGetValue(plan, out var entry) ? entry.Geometry : null;
        }
    }

    /// <summary>Records an enqueued update of the plan.</summary>
    public void Updated(CudaDecodePlan plan, PlanGeometry geometry, CudaStream stream)
    {
        lock (_lock)
        {
            var entry = _entries[plan];
            entry.Geometry = geometry;
            entry.PendingStream = stream.Handle;
        }
    }

    /// <summary>Records an enqueued decode with the plan over a cache of <paramref name="numBlocks"/> pages.</summary>
    public void Decoded(CudaDecodePlan plan, int numBlocks, CudaStream stream)
    {
        lock (_lock)
        {
            var entry = _entries[plan];
            entry.LastNumBlocks = numBlocks;
            entry.PendingStream = stream.Handle;
        }
    }

    /// <summary>
    /// After <paramref name="stream"/> was synchronized: checks the error records of the plans with
    /// unchecked work on it (or of <paramref name="only"/>), clears those that hold errors, and
    /// raises for the first.
    /// </summary>
    /// <exception cref="MlaInputException">A kernel rejected a length or a block id.</exception>
    /// <exception cref="InvalidOperationException">A kernel was launched with too little shared memory.</exception>
    public void Check(CudaStream stream, CudaDecodePlan? only = null)
    {
        var handle = stream.Handle;
        List<(CudaDecodePlan Plan, PlanGeometry? Geometry, int NumBlocks)> plans = [];
        lock (_lock)
        {
            foreach (var (plan, entry) in _entries)
            {
                if (only is null ? entry.PendingStream == handle : ReferenceEquals(plan, only))
                {
                    entry.PendingStream = 0;
                    plans.Add((plan, entry.Geometry, entry.LastNumBlocks));
                }
            }
        }

        Exception? first = null;
        Span<ErrorRecord> record = stackalloc ErrorRecord[1];
        foreach (var (plan, geometry, numBlocks) in plans)
        {
            if (plan.IsDisposed)
            {
                continue;
            }

            plan.Errors.CopyTo(record, stream);
            if (record[0].Flags == 0)
            {
                continue;
            }

            var error = BuildException(plan, record[0], geometry, numBlocks);
            plan.Errors.CopyFromAsync([ErrorRecord.Clean], stream);
            if ((record[0].Flags & ErrorRecord.MergeFlag) != 0)
            {
                plan.ResetMergeCounters(stream);
            }

            stream.Synchronize();
            first ??= error;
        }

        if (first is not null)
        {
            throw first;
        }
    }

    private static Exception BuildException(CudaDecodePlan plan, ErrorRecord record, PlanGeometry? geometry, int numBlocks)
    {
        var flags = record.Flags;
        if ((flags & ErrorRecord.SharedMemoryFlag) != 0 && (flags & ((int)MlaInputError.SequenceLengthOutOfRange | (int)MlaInputError.BlockIdOutOfRange)) == 0)
        {
            return new InvalidOperationException(string.Create(
                CultureInfo.InvariantCulture,
                $"A decode kernel ({plan.Describe()}) was launched with less dynamic shared memory than the {record.SharedMemoryNeeded} bytes it needs and did nothing; its outputs are not meaningful. This is a bug in the launching code."));
        }

        if ((flags & ErrorRecord.MergeFlag) != 0)
        {
            return new InvalidOperationException(string.Create(
                CultureInfo.InvariantCulture,
                $"A decode kernel ({plan.Describe()}) gave up waiting for the pieces of a split request: its CTAs were not all resident at once (another process or stream holding SMs, or an SM limit such as MPS's). The outputs are not meaningful; the plan's merge counters were reset."));
        }

        var badSeqlen = (flags & (int)MlaInputError.SequenceLengthOutOfRange) != 0 && record.BadSeqlenRequest != int.MaxValue ? record.BadSeqlenRequest : -1;
        var badBlock = (flags & (int)MlaInputError.BlockIdOutOfRange) != 0 && record.BadBlockRequest != int.MaxValue ? record.BadBlockRequest : -1;
        var parts = new List<string>();
        if ((flags & (int)MlaInputError.SequenceLengthOutOfRange) != 0)
        {
            parts.Add(string.Create(
                CultureInfo.InvariantCulture,
                $"cacheSeqlens[{badSeqlen}] is outside [0, {geometry?.Capacity ?? 0}] (max_blocks_per_seq × page_block_size); the kernels treated request {badSeqlen} as empty"));
        }

        if ((flags & (int)MlaInputError.BlockIdOutOfRange) != 0)
        {
            var range = numBlocks > 0 ? string.Create(CultureInfo.InvariantCulture, $"[0, {numBlocks})") : "[0, num_blocks)";
            parts.Add(string.Create(
                CultureInfo.InvariantCulture,
                $"blockTable row {badBlock} holds a block id outside {range} among the pages request {badBlock} uses; the kernels read those pages as zero"));
        }

        var message = $"The CUDA decode rejected device-resident input ({plan.Describe()}): {string.Join("; ", parts)}. The outputs of the named request are not meaningful.";
        return (flags & (int)MlaInputError.SequenceLengthOutOfRange) != 0
            ? new MlaInputException(badSeqlen, MlaInputError.SequenceLengthOutOfRange, message)
            : (flags & (int)MlaInputError.BlockIdOutOfRange) != 0
                ? new MlaInputException(badBlock, MlaInputError.BlockIdOutOfRange, message)
                : new MlaInputException(-1, MlaInputError.Unknown, message + string.Create(CultureInfo.InvariantCulture, $" (error flags 0x{flags:x})"));
    }

    private sealed class Entry
    {
        public PlanGeometry? Geometry { get; set; }

        public int LastNumBlocks { get; set; }

        public nint PendingStream { get; set; }
    }
}
