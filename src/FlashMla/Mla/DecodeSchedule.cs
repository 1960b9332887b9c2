namespace FlashMla.Mla;

/// <summary>
/// The split-KV work schedule of a decode call: which KV blocks of which requests each part
/// processes, and where split requests keep their partial results.
/// </summary>
/// <remarks>
/// <para>
/// Work is counted in blocks of <see cref="BlockSizeN"/> tokens. A request of <c>n</c> tokens has
/// <c>ceil(n / 64)</c> blocks; a zero-length request counts as one block (whose range is empty). Each
/// request also costs <see cref="FixedOverheadBlocks"/> blocks for its prologue and epilogue. With
/// <c>total</c> the sum of all costs, each part may spend
/// <c>payload = ceil(total / numParts) + FixedOverheadBlocks</c>.
/// </para>
/// <para>
/// Parts are filled one after another, walking the requests in order. A part repeatedly takes the
/// whole remainder of the current request when its budget covers the remainder plus the overhead,
/// and then moves on; otherwise it takes as many blocks as its budget minus the overhead allows (when
/// that is positive), which cuts the request, and closes. A request cut into <c>k</c> pieces occupies
/// <c>k</c> consecutive split slots starting at <c>num_splits[i]</c>, an exclusive prefix sum; an
/// uncut request has one slot and its part writes the final output directly.
/// </para>
/// <para>
/// A part's end is the request it stopped in and the block it stopped before; when it stopped exactly
/// at a request boundary, the end is the previous request with <c>EndBlock</c> = that request's block
/// count (0 for a zero-length request). When a part begins and ends in the same request, both split
/// flags are set to their OR. A part left without work has <c>BeginRequest</c> = b, and, by the same
/// end rule, <c>EndRequest</c> = b − 1 and <c>EndBlock</c> = the block count of request b − 1; its
/// other fields are 0.
/// </para>
/// </remarks>
public sealed class DecodeSchedule
{
    /// <summary>Tokens per scheduling block, whatever the page size.</summary>
    public const int BlockSizeN = 64;

    /// <summary>The per-request cost, in blocks, of the prologue and epilogue.</summary>
    public const int FixedOverheadBlocks = 5;

    private readonly DecodePart[] _parts;
    private readonly int[] _numSplits;
    private readonly int[] _blockCounts;

    private DecodeSchedule(DecodePart[] parts, int[] numSplits, int[] blockCounts)
    {
        _parts = parts;
        _numSplits = numSplits;
        _blockCounts = blockCounts;
    }

    /// <summary>The parts, one record per part (<see cref="NumParts"/> entries).</summary>
    public ReadOnlySpan<DecodePart> Parts => _parts;

    /// <summary>
    /// The exclusive prefix sum of split counts, b + 1 entries: request <c>i</c>'s partial results
    /// occupy slots <c>NumSplits[i] … NumSplits[i+1] − 1</c>.
    /// </summary>
    public ReadOnlySpan<int> NumSplits => _numSplits;

    /// <summary>The number of parts.</summary>
    public int NumParts => _parts.Length;

    /// <summary>The number of requests the schedule was computed for.</summary>
    public int Batch => _blockCounts.Length;

    /// <summary>The number of split slots in use: <c>NumSplits[b]</c> (at most b + <see cref="NumParts"/>).</summary>
    public int TotalSlots => _numSplits[^1];

    /// <summary>The number of pieces request <paramref name="request"/> is cut into (1 when unsplit).</summary>
    /// <param name="request">The request index.</param>
    /// <returns>The split count.</returns>
    public int SplitCount(int request) => _numSplits[request + 1] - _numSplits[request];

    /// <summary>The number of <see cref="BlockSizeN"/>-token blocks of each request, as scheduled
    /// (<c>ceil(seqlen / 64)</c>, so 0 for a zero-length request).</summary>
    internal ReadOnlySpan<int> BlockCounts => _blockCounts;

    /// <summary>
    /// The number of parts FlashMLA uses for a dense decode on a GPU:
    /// <c>max(smCount / h_kv / ceil(s_q · (h_q / h_kv) / 64), 1)</c>.
    /// </summary>
    /// <param name="smCount">The number of streaming multiprocessors.</param>
    /// <param name="queryLength">s_q.</param>
    /// <param name="queryHeads">h_q.</param>
    /// <param name="kvHeads">h_kv (divides h_q).</param>
    /// <returns>The part count, at least 1.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An argument is not positive.</exception>
    /// <exception cref="ArgumentException"><paramref name="queryHeads"/> is not a multiple of <paramref name="kvHeads"/>.</exception>
    public static int PartsFor(int smCount, int queryLength, int queryHeads, int kvHeads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(smCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(queryLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(queryHeads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvHeads, 1);
        if (queryHeads % kvHeads != 0)
        {
            throw new ArgumentException(
                $"h_q = {queryHeads} must be a multiple of h_kv = {kvHeads}.", nameof(kvHeads));
        }

        var rows = (long)queryLength * (queryHeads / kvHeads);
        var tiles = (rows + 63) / 64;
        return (int)Math.Max(smCount / kvHeads / tiles, 1);
    }

    /// <summary>Computes the schedule for the given sequence lengths.</summary>
    /// <param name="cacheSeqlens">The sequence length of each request (b ≥ 1 entries, each ≥ 0).</param>
    /// <param name="numParts">The number of parts (≥ 1).</param>
    /// <returns>The schedule.</returns>
    /// <exception cref="ArgumentException"><paramref name="cacheSeqlens"/> is empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A length is negative or <paramref name="numParts"/> is less than 1.</exception>
    public static DecodeSchedule Compute(ReadOnlySpan<int> cacheSeqlens, int numParts)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numParts, 1);
        var batch = cacheSeqlens.Length;
        if (batch == 0)
        {
            throw new ArgumentException("At least one sequence length is required; got 0.", nameof(cacheSeqlens));
        }

        var blockCounts = new int[batch]; // real blocks: ceil(n / 64)
        var costBlocks = new int[batch];  // scheduled blocks: zero-length counts as 1
        long total = 0;
        for (var i = 0; i < batch; i++)
        {
            var seqlen = cacheSeqlens[i];
            if (seqlen < 0)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(cacheSeqlens), $"cacheSeqlens[{i}] = {seqlen} is negative; lengths must be ≥ 0.");
            }

            blockCounts[i] = (int)(((long)seqlen + BlockSizeN - 1) / BlockSizeN);
            costBlocks[i] = Math.Max(blockCounts[i], 1);
            total += costBlocks[i] + FixedOverheadBlocks;
        }

        long payload = ((total + numParts - 1) / numParts) + FixedOverheadBlocks;
        var parts = new DecodePart[numParts];
        var numSplits = new int[batch + 1];
        int request = 0, block = 0, split = 0, cumulative = 0;
        for (var p = 0; p < numParts; p++)
        {
            var beginRequest = request;
            var beginBlock = block;
            var beginSplit = split;
            var firstIsSplit = block != 0 ? 1 : 0;
            var remain = payload;
            while (request < batch)
            {
                var left = costBlocks[request] - block;
                if (remain >= left + FixedOverheadBlocks)
                {
                    // Take the rest of the request and close it.
                    cumulative += split + 1;
                    numSplits[request + 1] = cumulative;
                    remain -= left + FixedOverheadBlocks;
                    request++;
                    block = 0;
                    split = 0;
                }
                else
                {
                    // Take what the budget allows (if anything) and close the part.
                    if (remain - FixedOverheadBlocks > 0)
                    {
                        block += (int)(remain - FixedOverheadBlocks);
                        split++;
                    }

                    break;
                }
            }

            int endRequest, endBlock, lastIsSplit;
            if (block > 0)
            {
                endRequest = request;
                endBlock = block;
                lastIsSplit = 1;
            }
            else
            {
                endRequest = request - 1;
                endBlock = endRequest >= 0 ? blockCounts[endRequest] : 0;
                lastIsSplit = 0;
            }

            if (beginRequest >= batch)
            {
                // No work left for this part.
                beginBlock = 0;
                beginSplit = 0;
                firstIsSplit = 0;
                lastIsSplit = 0;
            }
            else if (beginRequest == endRequest)
            {
                firstIsSplit = lastIsSplit = firstIsSplit | lastIsSplit;
            }

            parts[p] = new DecodePart(beginRequest, endRequest, beginBlock, endBlock, beginSplit, firstIsSplit, lastIsSplit, 0);
        }

        if (request != batch || block != 0 || split != 0)
        {
            throw new InvalidOperationException(
                $"Internal error: the schedule left request {request} (block {block}) unassigned after {numParts} parts.");
        }

        return new DecodeSchedule(parts, numSplits, blockCounts);
    }
}
