using FlashMla.Testing;


namespace FlashMla.Cli.Bench;

/// <summary>
/// One benchmark case: a name (the key on which results of two implementations are matched), the
/// suite it belongs to, the problem shape, and the exact per-request KV lengths.
/// </summary>
internal sealed record BenchCase
{
    public required string Name { get; init; }

    /// <summary>The built-in suite, or the cases file's name without its extension.</summary>
    public required string Suite { get; init; }

    /// <summary>The shape; <see cref="DecodeCaseSpec.SeqlenK"/> and <see cref="DecodeCaseSpec.Varlen"/> describe <see cref="SeqLens"/>.</summary>
    public required DecodeCaseSpec Spec { get; init; }

    /// <summary>cache_seqlens: one length per request (b of them).</summary>
    public required IReadOnlyList<int> SeqLens { get; init; }

    /// <summary>The names of the case's sizes in errors: the shape options, or the case's fields in its file.</summary>
    public ShapeNames Names { get; init; } = ShapeNames.Options;

    /// <summary>The mean of <see cref="SeqLens"/> (mean_s_k of the formulas).</summary>
    public double MeanSeqLen => SeqLens.Count == 0 ? 0 : SeqLens.Average(s => (double)s);
}
