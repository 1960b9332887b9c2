using System.Globalization;

namespace FlashMla.Testing;

/// <summary>One configuration of the decoder test grid.</summary>
/// <param name="Batch">b.</param>
/// <param name="QueryLength">s_q.</param>
/// <param name="SeqlenK">s_k.</param>
/// <param name="QueryHeads">h_q.</param>
/// <param name="KvHeads">h_kv.</param>
/// <param name="Varlen">Variable lengths (FlashMLA's normal distribution) instead of fixed ones.</param>
/// <param name="Causal">Causal masking.</param>
/// <param name="PageBlockSize">Tokens per page.</param>
public sealed record GridCase(int Batch, int QueryLength, int SeqlenK, int QueryHeads, int KvHeads, bool Varlen, bool Causal, int PageBlockSize)
{
    /// <summary>
    /// The case's spec with the given seed; the block table always has a column no request uses and
    /// the pool pages no entry references.
    /// </summary>
    /// <param name="seed">The seed.</param>
    /// <returns>The spec.</returns>
    public DecodeCaseSpec ToSpec(int seed) => new()
    {
        Batch = Batch,
        QueryLength = QueryLength,
        SeqlenK = SeqlenK,
        QueryHeads = QueryHeads,
        KvHeads = KvHeads,
        Varlen = Varlen,
        Causal = Causal,
        PageBlockSize = PageBlockSize,
        ExtraTableColumns = 1,
        ExtraPoolBlocks = 3,
        Seed = seed,
    };

    /// <summary>A compact label, e.g. <c>b2 sq1 sk140 hq16 hkv2 varlen causal page16</c>.</summary>
    /// <returns>The label.</returns>
    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"b{Batch} sq{QueryLength} sk{SeqlenK} hq{QueryHeads} hkv{KvHeads} {(Varlen ? "varlen" : "fixed")} {(Causal ? "causal" : "full")} page{PageBlockSize}");
}

/// <summary>
/// The decoder test grid, covered pairwise: b ∈ {1, 2, 6}, s_q ∈ {1, 2, 4},
/// s_k ∈ {0, 1, 20, 140, 1000}, h_q ∈ {1, 3, 9, 16, 64, 128}, h_kv ∈ {1, 2, 8} (dividing h_q),
/// fixed/variable lengths, causal off/on, page size ∈ {1, 16, 64}. Each element type runs the
/// whole set, so the element type is crossed with every pair.
/// </summary>
public static class DecoderGrid
{
    private static readonly int[] Batches = [1, 2, 6];
    private static readonly int[] QueryLengths = [1, 2, 4];
    private static readonly int[] SeqlensK = [0, 1, 20, 140, 1000];
    private static readonly int[] QueryHeadCounts = [1, 3, 9, 16, 64, 128];
    private static readonly int[] KvHeadCounts = [1, 2, 8];
    private static readonly int[] PageSizes = [1, 16, 64];

    private static readonly Lazy<IReadOnlyList<GridCase>> Pairs = new(BuildPairwise);

    /// <summary>The number of values of each factor, in the order b, s_q, s_k, h_q, h_kv, varlen, causal, page.</summary>
    public static IReadOnlyList<int> Levels { get; } =
        [Batches.Length, QueryLengths.Length, SeqlensK.Length, QueryHeadCounts.Length, KvHeadCounts.Length, 2, 2, PageSizes.Length];

    /// <summary>The pairwise covering set (deterministic).</summary>
    public static IReadOnlyList<GridCase> PairwiseCases => Pairs.Value;

    /// <summary>The grid constraint on a partial assignment (−1 = unassigned): h_kv divides h_q.</summary>
    /// <param name="test">Value indices per factor.</param>
    /// <returns>Whether the assignment is allowed.</returns>
    public static bool IsValid(int[] test)
    {
        ArgumentNullException.ThrowIfNull(test);
        return test[3] < 0 || test[4] < 0 || QueryHeadCounts[test[3]] % KvHeadCounts[test[4]] == 0;
    }

    /// <summary>Maps value indices to a case.</summary>
    /// <param name="test">Value indices per factor.</param>
    /// <returns>The case.</returns>
    public static GridCase ToCase(int[] test)
    {
        ArgumentNullException.ThrowIfNull(test);
        return new GridCase(
            Batches[test[0]],
            QueryLengths[test[1]],
            SeqlensK[test[2]],
            QueryHeadCounts[test[3]],
            KvHeadCounts[test[4]],
            test[5] == 1,
            test[6] == 1,
            PageSizes[test[7]]);
    }

    private static IReadOnlyList<GridCase> BuildPairwise() =>
        Pairwise.Generate(Levels, IsValid).Select(ToCase).ToArray();
}
