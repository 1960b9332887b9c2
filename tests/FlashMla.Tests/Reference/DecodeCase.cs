using System.Globalization;
using FlashMla.Mla;
using FlashMla.Tensors;

namespace FlashMla.Tests.Reference;

/// <summary>How a <see cref="DecodeCaseSpec"/> chooses sequence lengths.</summary>
public enum SeqlenMode
{
    /// <summary>Every request has <see cref="DecodeCaseSpec.SeqlenK"/> tokens.</summary>
    Fixed,

    /// <summary>FlashMLA's variable lengths: <c>max(int(Normal(s_k, s_k / 2)), s_q)</c> per request.</summary>
    Varlen,

    /// <summary>The lengths in <see cref="DecodeCaseSpec.Lengths"/>.</summary>
    Explicit,
}

/// <summary>The parameters of a generated decode test case.</summary>
public sealed record DecodeCaseSpec
{
    /// <summary>b.</summary>
    public int Batch { get; init; } = 1;

    /// <summary>s_q.</summary>
    public int QueryLength { get; init; } = 1;

    /// <summary>h_q.</summary>
    public int QueryHeads { get; init; } = 16;

    /// <summary>h_kv.</summary>
    public int KvHeads { get; init; } = 1;

    /// <summary>d (576 or 512).</summary>
    public int HeadDim { get; init; } = 576;

    /// <summary>Tokens per page.</summary>
    public int PageBlockSize { get; init; } = 64;

    /// <summary>How lengths are chosen.</summary>
    public SeqlenMode Mode { get; init; } = SeqlenMode.Fixed;

    /// <summary>s_k for <see cref="SeqlenMode.Fixed"/> and <see cref="SeqlenMode.Varlen"/>.</summary>
    public int SeqlenK { get; init; } = 64;

    /// <summary>The lengths for <see cref="SeqlenMode.Explicit"/> (b entries).</summary>
    public IReadOnlyList<int>? Lengths { get; init; }

    /// <summary>Set a random subset (at least one) of the requests to length 0.</summary>
    public bool ZeroLengthMix { get; init; }

    /// <summary>Causal masking.</summary>
    public bool Causal { get; init; }

    /// <summary>An explicit softmax scale (null: d^−0.5).</summary>
    public float? SoftmaxScale { get; init; }

    /// <summary>Use padded (non-contiguous) layouts for q, k_cache, block table, output and lse.</summary>
    public bool NonContiguous { get; init; }

    /// <summary>Block-table columns beyond those the longest request needs (filled with garbage).</summary>
    public int ExtraTableColumns { get; init; } = 1;

    /// <summary>Blocks in the pool beyond one per block-table entry (all NaN).</summary>
    public int ExtraPoolBlocks { get; init; } = 3;

    /// <summary>The random seed.</summary>
    public int Seed { get; init; }

    /// <summary>A one-line description for failure messages (includes the seed).</summary>
    /// <returns>The description.</returns>
    public override string ToString()
    {
        var lengths = Mode == SeqlenMode.Explicit && Lengths is not null
            ? "lengths=[" + string.Join(",", Lengths) + "]"
            : string.Create(CultureInfo.InvariantCulture, $"s_k={SeqlenK} {(Mode == SeqlenMode.Varlen ? "varlen" : "fixed")}");
        return string.Create(
            CultureInfo.InvariantCulture,
            $"b={Batch} s_q={QueryLength} h_q={QueryHeads} h_kv={KvHeads} d={HeadDim} page={PageBlockSize} {lengths}{(ZeroLengthMix ? " zero-mix" : string.Empty)} causal={Causal}{(SoftmaxScale is { } s ? $" scale={s}" : string.Empty)}{(NonContiguous ? " non-contiguous" : string.Empty)} seed={Seed}");
    }
}

/// <summary>
/// A generated decode input in the style of FlashMLA's dense decoding test: q and k_cache are
/// <c>clamp(randn / 10, −1, 1)</c>; the block table maps each request onto a shuffled pool of pages;
/// every cache slot past a request's length (the tail of its last page and all unused pages) is NaN;
/// block-table entries past a request's last page hold garbage ids (huge, negative, out of range).
/// </summary>
/// <typeparam name="T">The element type of q, k_cache and output.</typeparam>
public sealed class DecodeCase<T>
    where T : unmanaged
{
    private static readonly int[] GarbageIds = [2147480000, -1, -123456, int.MinValue, int.MaxValue];

    private DecodeCase(DecodeCaseSpec spec, int[] seqlens, HostTensor<T> q, HostTensor<T> kCache, HostTensor<int> blockTable, HostTensor<int> cacheSeqlens, int maxBlocksPerSequence, int numBlocks)
    {
        Spec = spec;
        Seqlens = seqlens;
        Q = q;
        KCache = kCache;
        BlockTable = blockTable;
        CacheSeqlens = cacheSeqlens;
        MaxBlocksPerSequence = maxBlocksPerSequence;
        NumBlocks = numBlocks;
        Options = new MlaDecodeOptions { Causal = spec.Causal, SoftmaxScale = spec.SoftmaxScale };
    }

    /// <summary>The parameters.</summary>
    public DecodeCaseSpec Spec { get; }

    /// <summary>The sequence lengths.</summary>
    public IReadOnlyList<int> Seqlens { get; }

    /// <summary>q, [b, s_q, h_q, d].</summary>
    public HostTensor<T> Q { get; }

    /// <summary>k_cache, [num_blocks, page, h_kv, d].</summary>
    public HostTensor<T> KCache { get; }

    /// <summary>The block table, [b, max_blocks_per_seq].</summary>
    public HostTensor<int> BlockTable { get; }

    /// <summary>The lengths as a tensor, [b].</summary>
    public HostTensor<int> CacheSeqlens { get; }

    /// <summary>Block-table columns.</summary>
    public int MaxBlocksPerSequence { get; }

    /// <summary>Pages in the pool.</summary>
    public int NumBlocks { get; }

    /// <summary>The decode options (causal, scale).</summary>
    public MlaDecodeOptions Options { get; }

    /// <summary>The description for failure messages: the spec, the dtype and the lengths.</summary>
    public string Description =>
        $"{Spec} dtype={TensorTestUtil.DTypeName<T>()} seqlens=[{string.Join(",", Seqlens)}]";

    /// <summary>A poisoned output tensor, [b, s_q, h_q, 512] (padded when the case is non-contiguous).</summary>
    /// <returns>The tensor.</returns>
    public HostTensor<T> NewOutput() =>
        TensorTestUtil.AllocatePoisoned<T>(Spec.NonContiguous, Spec.Batch, Spec.QueryLength, Spec.QueryHeads, 512);

    /// <summary>A poisoned LSE tensor, [b, h_q, s_q] (padded when the case is non-contiguous).</summary>
    /// <returns>The tensor.</returns>
    public HostTensor<float> NewLse() =>
        TensorTestUtil.AllocatePoisoned<float>(Spec.NonContiguous, Spec.Batch, Spec.QueryHeads, Spec.QueryLength);

    /// <summary>Generates a case.</summary>
    /// <param name="spec">The parameters.</param>
    /// <returns>The case.</returns>
    public static DecodeCase<T> Create(DecodeCaseSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var rng = new Random(spec.Seed);
        var b = spec.Batch;
        var seqlens = new int[b];
        for (var i = 0; i < b; i++)
        {
            seqlens[i] = spec.Mode switch
            {
                SeqlenMode.Fixed => spec.SeqlenK,
                SeqlenMode.Varlen => Math.Max((int)(spec.SeqlenK + (spec.SeqlenK / 2.0 * NextGaussian(rng))), spec.QueryLength),
                _ => spec.Lengths is { } lengths && lengths.Count == b
                    ? lengths[i]
                    : throw new ArgumentException($"Explicit mode needs {b} lengths.", nameof(spec)),
            };
        }

        if (spec.ZeroLengthMix)
        {
            var any = false;
            for (var i = 0; i < b; i++)
            {
                if (rng.NextDouble() < 0.25)
                {
                    seqlens[i] = 0;
                    any = true;
                }
            }

            if (!any)
            {
                seqlens[rng.Next(b)] = 0;
            }
        }

        var page = spec.PageBlockSize;
        var maxLen = seqlens.Max();
        var maxBlocks = Math.Max(1, (maxLen + page - 1) / page) + spec.ExtraTableColumns;
        var numBlocks = (b * maxBlocks) + spec.ExtraPoolBlocks;
        var pool = Enumerable.Range(0, numBlocks).ToArray();
        rng.Shuffle(pool);

        // Block table: pages in use come from the shuffled pool; the rest is garbage.
        var tableLayout = spec.NonContiguous
            ? new TensorLayout([b, maxBlocks], [maxBlocks + 5, 1])
            : TensorLayout.Contiguous(b, maxBlocks);
        var blockTable = TensorTestUtil.Allocate(tableLayout, 2147480000);
        var table = blockTable.Span;
        int[] garbage = [.. GarbageIds, numBlocks, numBlocks + 1000];
        for (var i = 0; i < b; i++)
        {
            var inUse = (seqlens[i] + page - 1) / page;
            for (var j = 0; j < maxBlocks; j++)
            {
                table[(int)tableLayout.OffsetOf(i, j)] = j < inUse
                    ? pool[(i * maxBlocks) + j]
                    : garbage[(i + j) % garbage.Length];
            }
        }

        var nan = TensorTestUtil.FromDouble<T>(double.NaN);
        var d = spec.HeadDim;

        // q: randn / 10 clamped to [-1, 1]; padding is NaN.
        long[] qShape = [b, spec.QueryLength, spec.QueryHeads, d];
        var q = TensorTestUtil.Allocate(spec.NonContiguous ? TensorTestUtil.Padded(qShape) : TensorLayout.Contiguous(qShape), nan);
        var qMemory = q.Memory;
        TensorTestUtil.ForEachOffset(q.Layout, (_, offset) => qMemory.Span[(int)offset] = RandomValue(rng));

        // k_cache: NaN everywhere, then data in the slots of each request's first seqlen tokens.
        long[] kShape = [numBlocks, page, spec.KvHeads, d];
        var kCache = TensorTestUtil.Allocate(spec.NonContiguous ? TensorTestUtil.Padded(kShape) : TensorLayout.Contiguous(kShape), nan);
        var k = kCache.Span;
        for (var i = 0; i < b; i++)
        {
            for (var t = 0; t < seqlens[i]; t++)
            {
                var block = table[(int)tableLayout.OffsetOf(i, t / page)];
                for (var h = 0; h < spec.KvHeads; h++)
                {
                    var offset = (int)kCache.Layout.OffsetOf(block, t % page, h, 0);
                    for (var c = 0; c < d; c++)
                    {
                        k[offset + c] = RandomValue(rng);
                    }
                }
            }
        }

        var cacheSeqlens = new HostTensor<int>(seqlens.ToArray(), TensorLayout.Contiguous(b));
        return new DecodeCase<T>(spec, seqlens, q, kCache, blockTable, cacheSeqlens, maxBlocks, numBlocks);
    }

    /// <summary>A standard normal sample (Box–Muller).</summary>
    /// <param name="rng">The generator.</param>
    /// <returns>The sample.</returns>
    public static double NextGaussian(Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        var u1 = 1.0 - rng.NextDouble();
        var u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    private static T RandomValue(Random rng) =>
        TensorTestUtil.FromDouble<T>(Math.Clamp(NextGaussian(rng) / 10.0, -1.0, 1.0));
}
