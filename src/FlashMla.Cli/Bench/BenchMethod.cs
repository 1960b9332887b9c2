namespace FlashMla.Cli.Bench;

/// <summary>
/// The timing method shared with the FlashMLA figures (../shared/bench): the KV cache laid out
/// <c>R</c> times so that the copies together are at least four times the L2, one CUDA graph of
/// <c>K = max(R, 8)</c> consecutive decode calls (call i on rotation i mod R), 3 warm-up replays,
/// then 15 replays timed one by one with events; the figure is the median of (replay time / K).
/// Only the arithmetic lives here, so that it can be tested without a GPU.
/// </summary>
internal static class BenchMethod
{
    /// <summary>The R copies together are at least this many times the L2.</summary>
    public const double L2Multiple = 4.0;

    /// <summary>The largest rotation count.</summary>
    public const int MaxRotations = 64;

    /// <summary>A graph holds at least this many decode calls.</summary>
    public const int MinCallsPerGraph = 8;

    /// <summary>Untimed replays of the graph before the timed ones.</summary>
    public const int WarmupReplays = 3;

    /// <summary>Replays of the graph, each timed with its own pair of events.</summary>
    public const int TimedReplays = 15;

    /// <summary>
    /// R = ceil(4·L2 / bytesPerCopy) clamped to [1, 64], then reduced while R copies exceed half
    /// of the free device memory.
    /// </summary>
    /// <param name="bytesPerCopy">Bytes of one rotation: its KV pages and its q.</param>
    /// <param name="l2Bytes">The device's L2 size.</param>
    /// <param name="freeBytes">Free device memory before the case's buffers are allocated.</param>
    public static int Rotations(long bytesPerCopy, long l2Bytes, long freeBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytesPerCopy);
        ArgumentOutOfRangeException.ThrowIfNegative(l2Bytes);
        var rotations = (int)Math.Clamp(Math.Ceiling(L2Multiple * l2Bytes / bytesPerCopy), 1, MaxRotations);
        while (rotations > 1 && (double)rotations * bytesPerCopy > freeBytes / 2.0)
        {
            rotations--;
        }
        return rotations;
    }

    /// <summary>K = max(R, 8): the decode calls captured in the one graph.</summary>
    public static int CallsPerGraph(int rotations)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rotations);
        return Math.Max(rotations, MinCallsPerGraph);
    }

    /// <summary>
    /// Bytes of one rotation: (KV blocks · page · h_kv · d + b · s_q · h_q · d) · element size.
    /// </summary>
    public static long BytesPerCopy(long kvBlocks, int pageBlockSize, int kvHeads, int headDim, long qElements, int elementSize) =>
        ((kvBlocks * pageBlockSize * kvHeads * headDim) + qElements) * elementSize;

    /// <summary>Per-call times of the replays: replay time (ms) / K, in µs.</summary>
    public static double[] PerCallMicroseconds(IReadOnlyList<double> replayMs, int callsPerGraph)
    {
        ArgumentNullException.ThrowIfNull(replayMs);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(callsPerGraph);
        return [.. replayMs.Select(ms => ms * 1000.0 / callsPerGraph)];
    }

    /// <summary>
    /// graph_us: the median over replays of (replay time / K) in µs. The median is the element at
    /// index n/2 of the sorted values, as in the FlashMLA side (the middle one for the 15 replays).
    /// </summary>
    public static double GraphMicroseconds(IReadOnlyList<double> replayMs, int callsPerGraph)
    {
        var perCall = PerCallMicroseconds(replayMs, callsPerGraph);
        if (perCall.Length == 0)
        {
            throw new ArgumentException("no replay was timed", nameof(replayMs));
        }
        Array.Sort(perCall);
        return perCall[perCall.Length / 2];
    }

    /// <summary>
    /// Block tables of all rotations, [R, b, maxBlocks] row-major: rotation r maps the pages of
    /// every request, in order, onto a random permutation of the blocks
    /// [r·blocksPerCopy, (r+1)·blocksPerCopy); entries past a request's last page hold
    /// <paramref name="unusedBlockId"/>.
    /// </summary>
    public static int[] BlockTables(IReadOnlyList<int> pages, int rotations, int maxBlocks, int unusedBlockId, Action<Span<int>> shuffle)
    {
        ArgumentNullException.ThrowIfNull(pages);
        ArgumentNullException.ThrowIfNull(shuffle);
        var batch = pages.Count;
        var blocksPerCopy = Math.Max(1L, pages.Sum(p => (long)p));
        if (rotations * blocksPerCopy > int.MaxValue)
        {
            throw new CliFailureException($"{rotations * blocksPerCopy} KV blocks do not fit int32 block ids; use a larger page size");
        }
        var table = new int[(long)rotations * batch * maxBlocks];
        Array.Fill(table, unusedBlockId);
        var permutation = new int[blocksPerCopy];
        for (var r = 0; r < rotations; r++)
        {
            for (var i = 0; i < permutation.Length; i++)
            {
                permutation[i] = (int)((r * blocksPerCopy) + i);
            }
            shuffle(permutation);
            var next = 0;
            for (var request = 0; request < batch; request++)
            {
                for (var p = 0; p < pages[request]; p++)
                {
                    table[((((long)r * batch) + request) * maxBlocks) + p] = permutation[next++];
                }
            }
        }
        return table;
    }
}
