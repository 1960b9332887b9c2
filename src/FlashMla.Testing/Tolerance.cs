using FlashMla.Tensors;

namespace FlashMla.Testing;

/// <summary>Tolerances of FlashMLA's <c>check_is_allclose</c>.</summary>
/// <param name="Abs">An element passes when its absolute error is below this …</param>
/// <param name="Rel">… or its relative error |a − r| / (|r| + 1e−6) is below this.</param>
/// <param name="Cos">The largest allowed cosine difference 1 − 2Σ(a·r) / Σ(a² + r²).</param>
public sealed record Tolerance(double Abs, double Rel, double Cos)
{
    /// <summary>FlashMLA's output tolerance (bf16): abs 8e-4, rel 2.01/128, cos 5e-6.</summary>
    public static Tolerance Output { get; } = new(8e-4, 2.01 / 128, 5e-6);

    /// <summary>
    /// A tighter output tolerance for fp16, whose 11-bit significand rounds 4× finer than bf16's:
    /// abs 1e-4, rel 2.01/1024, cos 1e-6.
    /// </summary>
    public static Tolerance OutputHalf { get; } = new(1e-4, 2.01 / 1024, 1e-6);

    /// <summary>FlashMLA's LSE tolerance: abs 1e-6, rel 8.01/65536, cos 1e-7.</summary>
    public static Tolerance Lse { get; } = new(1e-6, 8.01 / 65536, 1e-7);

    /// <summary>
    /// The output bound of a decoder for an element type: <see cref="Output"/> for bf16, and for
    /// fp16 where the decoder rounds the probabilities P to the input type before the PV product (as
    /// FlashMLA's kernels and ours do; FlashMLA's tests use one bound for both types); the tighter
    /// <see cref="OutputHalf"/> for fp16 where P stays float (the CPU decoder).
    /// </summary>
    /// <param name="type">The output's element type.</param>
    /// <param name="roundsProbabilities">Whether the decoder rounds P to the input type.</param>
    /// <returns>The bound.</returns>
    public static Tolerance ForOutput(ElementType type, bool roundsProbabilities) =>
        type == ElementType.Float16 && !roundsProbabilities ? OutputHalf : Output;
}
