using FlashMla.Mla;
using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Testing;

/// <summary>
/// A generated decode input in the style of FlashMLA's dense decode test, whatever its element
/// type: see <see cref="DecodeCase{T}"/>, which every case is.
/// </summary>
public abstract class DecodeCase
{
    private protected DecodeCase(DecodeCaseSpec spec, int[] seqlens, int maxBlocksPerSequence, int numBlocks)
    {
        Spec = spec;
        Seqlens = seqlens;
        MaxBlocksPerSequence = maxBlocksPerSequence;
        NumBlocks = numBlocks;
    }

    /// <summary>The parameters (with the case's element type).</summary>
    public DecodeCaseSpec Spec { get; }

    /// <summary>The sequence lengths.</summary>
    public IReadOnlyList<int> Seqlens { get; }

    /// <summary>Block-table columns.</summary>
    public int MaxBlocksPerSequence { get; }

    /// <summary>Pages in the pool.</summary>
    public int NumBlocks { get; }

    /// <summary>The decode options (causal, scale).</summary>
    public MlaDecodeOptions Options => Spec.Options;

    /// <summary>The mean of <see cref="Seqlens"/>.</summary>
    public double MeanSeqlen => Seqlens.Count == 0 ? 0 : Seqlens.Average(s => (double)s);

    /// <summary>The shape of q: [b, s_q, h_q, d].</summary>
    public long[] QShape => [Spec.Batch, Spec.QueryLength, Spec.QueryHeads, Spec.HeadDim];

    /// <summary>The shape of k_cache: [num_blocks, page_block_size, h_kv, d].</summary>
    public long[] KShape => [NumBlocks, Spec.PageBlockSize, Spec.KvHeads, Spec.HeadDim];

    /// <summary>The shape of the block table: [b, max_blocks_per_seq].</summary>
    public long[] BlockTableShape => [Spec.Batch, MaxBlocksPerSequence];

    /// <summary>The shape of the output: [b, s_q, h_q, 512].</summary>
    public long[] OutputShape => [Spec.Batch, Spec.QueryLength, Spec.QueryHeads, DecodeCaseSpec.HeadDimV];

    /// <summary>The shape of the LSE: [b, h_q, s_q].</summary>
    public long[] LseShape => [Spec.Batch, Spec.QueryHeads, Spec.QueryLength];

    /// <summary>The description for failure messages: the spec (with its seed) and the lengths.</summary>
    public string Description => $"{Spec} seqlens=[{string.Join(",", Seqlens)}]";

    /// <summary>
    /// The block table's width for a longest length: <c>max(1, ceil(round_up(max_len, padding) / page))</c>
    /// plus <see cref="DecodeCaseSpec.ExtraTableColumns"/>, in 64-bit arithmetic (so that any int
    /// length gives its true width).
    /// </summary>
    /// <param name="spec">The case (page size, padding, extra columns).</param>
    /// <param name="maxLength">The longest KV length.</param>
    /// <returns>The number of block-table columns.</returns>
    public static long TableColumns(DecodeCaseSpec spec, long maxLength)
    {
        ArgumentNullException.ThrowIfNull(spec);
        long padding = Math.Max(1, spec.SeqlenPadding);
        long page = Math.Max(1, spec.PageBlockSize);
        var padded = (Math.Max(0, maxLength) + padding - 1) / padding * padding;
        return Math.Max(1, (padded + page - 1) / page) + spec.ExtraTableColumns;
    }

    /// <summary>Generates a case of the spec's element type.</summary>
    /// <param name="spec">The parameters.</param>
    /// <returns>A <see cref="DecodeCase{T}"/> of <see cref="BFloat16"/> or <see cref="Half"/>.</returns>
    public static DecodeCase Create(DecodeCaseSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return spec.ElementType switch
        {
            ElementType.BFloat16 => DecodeCase<BFloat16>.Create(spec),
            ElementType.Float16 => DecodeCase<Half>.Create(spec),
            _ => throw new ArgumentException($"No decode case of element type {spec.ElementType}.", nameof(spec)),
        };
    }
}

/// <summary>
/// A generated decode input in the style of FlashMLA's dense decode test (seeded by
/// <see cref="DecodeCaseSpec.Seed"/>): the lengths of <see cref="RandomInputs.Lengths"/>; a block
/// table of <c>ceil(round_up(max_len, 256) / page)</c> columns (<see cref="DecodeCaseSpec.SeqlenPadding"/>,
/// plus <see cref="DecodeCaseSpec.ExtraTableColumns"/>) that maps the requests onto a random
/// permutation of the pool, with <see cref="RandomInputs.UnusedBlockId"/> past each request's last page; q and
/// the cache slots of each request's tokens from <see cref="RandomInputs.Value{T}"/>; every other
/// cache slot (the tail of a last page, unreferenced pages) and all padding NaN.
/// </summary>
/// <typeparam name="T">The element type of q, k_cache and output.</typeparam>
public sealed class DecodeCase<T> : DecodeCase
    where T : unmanaged
{
    private DecodeCase(DecodeCaseSpec spec, int[] seqlens, HostTensor<T> q, HostTensor<T> kCache, HostTensor<int> blockTable, int maxBlocksPerSequence, int numBlocks)
        : base(spec, seqlens, maxBlocksPerSequence, numBlocks)
    {
        Q = q;
        KCache = kCache;
        BlockTable = blockTable;
        CacheSeqlens = new HostTensor<int>(seqlens.ToArray(), TensorLayout.Contiguous(seqlens.Length));
    }

    /// <summary>q, [b, s_q, h_q, d].</summary>
    public HostTensor<T> Q { get; }

    /// <summary>k_cache, [num_blocks, page, h_kv, d].</summary>
    public HostTensor<T> KCache { get; }

    /// <summary>The block table, [b, max_blocks_per_seq].</summary>
    public HostTensor<int> BlockTable { get; }

    /// <summary>The lengths as a tensor, [b].</summary>
    public HostTensor<int> CacheSeqlens { get; }

    /// <summary>A poisoned output tensor, [b, s_q, h_q, 512] (padded when the case is non-contiguous).</summary>
    /// <returns>The tensor.</returns>
    public HostTensor<T> NewOutput() => TestTensors.AllocatePoisoned<T>(Spec.NonContiguous, OutputShape);

    /// <summary>A poisoned LSE tensor, [b, h_q, s_q] (padded when the case is non-contiguous).</summary>
    /// <returns>The tensor.</returns>
    public HostTensor<float> NewLse() => TestTensors.AllocatePoisoned<float>(Spec.NonContiguous, LseShape);

    /// <summary>Generates a case; its spec's element type becomes <typeparamref name="T"/>'s.</summary>
    /// <param name="spec">The parameters.</param>
    /// <returns>The case.</returns>
    /// <exception cref="NotSupportedException">The cache or q holds more elements than one host array can.</exception>
    public static new DecodeCase<T> Create(DecodeCaseSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        spec = spec with { ElementType = ElementTypes.Of<T>(nameof(T)) };
        var rng = new Gaussian(spec.Seed);
        var seqlens = RandomInputs.Lengths(spec, rng);
        var b = spec.Batch;
        var page = spec.PageBlockSize;
        var d = spec.HeadDim;

        var maxLen = seqlens.Length == 0 ? 0 : seqlens.Max();
        var columns = DecodeCase.TableColumns(spec, maxLen);
        var tableEntries = (long)b * columns;
        var numBlocks = tableEntries + spec.ExtraPoolBlocks;
        var qElements = (long)b * spec.QueryLength * spec.QueryHeads * d;
        if (qElements > Array.MaxLength)
        {
            throw new NotSupportedException(
                $"this case's q holds {qElements} elements ({(double)qElements * spec.ElementType.SizeInBytes / (1L << 30):F1} GiB), more than one host array can hold ({Array.MaxLength})");
        }

        if (columns > int.MaxValue || numBlocks > int.MaxValue || numBlocks * page * spec.KvHeads > Array.MaxLength / d)
        {
            throw new NotSupportedException(
                $"this case's KV cache has {numBlocks} pages of {page} tokens ({(double)numBlocks * page * spec.KvHeads * d * spec.ElementType.SizeInBytes / (1L << 30):F1} GiB), " +
                $"more than one host array can hold ({Array.MaxLength} elements, {int.MaxValue} pages)");
        }

        var maxBlocks = (int)columns;

        // The block table: a random permutation of the pool, unused entries marked.
        var pool = Enumerable.Range(0, (int)numBlocks).ToArray();
        rng.Shuffle(pool.AsSpan());
        var tableLayout = spec.NonContiguous
            ? new TensorLayout([b, maxBlocks], [maxBlocks + 5, 1])
            : TensorLayout.Contiguous(b, maxBlocks);
        var blockTable = TestTensors.Allocate(tableLayout, RandomInputs.UnusedBlockId);
        var table = blockTable.Span;
        var slotUsed = new bool[numBlocks * page];
        for (var i = 0; i < b; i++)
        {
            var pages = (seqlens[i] + page - 1) / page;
            for (var j = 0; j < pages; j++)
            {
                var block = pool[(i * maxBlocks) + j];
                table[(int)TestTensors.OffsetOf(tableLayout, i, j)] = block;
                var tokens = Math.Min(page, seqlens[i] - (j * page));
                slotUsed.AsSpan(block * page, tokens).Fill(true);
            }
        }

        var nan = TestTensors.FromDouble<T>(double.NaN);

        // q, then the used cache slots in memory order; everything else NaN.
        long[] qShape = [b, spec.QueryLength, spec.QueryHeads, d];
        var q = TestTensors.Allocate(spec.NonContiguous ? TestTensors.Padded(qShape) : TensorLayout.Contiguous(qShape), nan);
        var qMemory = q.Memory;
        TestTensors.ForEachOffset(q.Layout, (_, offset) => qMemory.Span[(int)offset] = RandomInputs.Value<T>(rng));

        long[] kShape = [numBlocks, page, spec.KvHeads, d];
        var kCache = TestTensors.Allocate(spec.NonContiguous ? TestTensors.Padded(kShape) : TensorLayout.Contiguous(kShape), nan);
        var k = kCache.Span;
        var columnStride = kCache.Layout.Strides[3];
        for (var slot = 0; slot < slotUsed.Length; slot++)
        {
            if (!slotUsed[slot])
            {
                continue;
            }

            for (var h = 0; h < spec.KvHeads; h++)
            {
                var offset = TestTensors.OffsetOf(kCache.Layout, slot / page, slot % page, h, 0);
                for (var c = 0; c < d; c++)
                {
                    k[(int)(offset + (c * columnStride))] = RandomInputs.Value<T>(rng);
                }
            }
        }

        return new DecodeCase<T>(spec, seqlens, q, kCache, blockTable, maxBlocks, (int)numBlocks);
    }
}
