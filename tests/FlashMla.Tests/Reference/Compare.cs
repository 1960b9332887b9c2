using System.Globalization;
using System.Text;

namespace FlashMla.Tests.Reference;

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
}

/// <summary>The outcome of a comparison.</summary>
/// <param name="Passed">Whether every check passed.</param>
/// <param name="Message">The failure description (empty when passed).</param>
/// <param name="BadElements">The number of elements out of tolerance (or with mismatched inf/NaN).</param>
/// <param name="CosineDiff">The cosine difference over the finite elements.</param>
public sealed record CompareResult(bool Passed, string Message, long BadElements, double CosineDiff);

/// <summary>FlashMLA's tolerance check (<c>kernelkit/compare.py</c> <c>check_is_allclose</c>), in C#.</summary>
public static class Compare
{
    /// <summary>
    /// Compares <paramref name="actual"/> with <paramref name="expected"/>: positions of ±∞ and NaN
    /// must match exactly; every finite element must pass the absolute or the relative bound; then
    /// the cosine difference over the finite elements must not exceed the cosine bound.
    /// </summary>
    /// <param name="actual">The values under test.</param>
    /// <param name="expected">The reference values.</param>
    /// <param name="tolerance">The bounds.</param>
    /// <param name="shape">The logical shape, to format indices (optional).</param>
    /// <returns>The outcome.</returns>
    public static CompareResult Check(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, Tolerance tolerance, ReadOnlySpan<long> shape = default)
    {
        ArgumentNullException.ThrowIfNull(tolerance);
        if (actual.Length != expected.Length)
        {
            return new CompareResult(false, $"length mismatch: actual {actual.Length}, expected {expected.Length}", actual.Length, double.NaN);
        }

        long bad = 0;
        var first = -1;
        var firstReason = string.Empty;
        double dot = 0, norms = 0;
        for (var i = 0; i < actual.Length; i++)
        {
            var a = actual[i];
            var r = expected[i];
            string? reason = null;
            if (!double.IsFinite(a) || !double.IsFinite(r))
            {
                var same = (double.IsNaN(a) && double.IsNaN(r)) || (double.IsInfinity(a) && a == r);
                if (!same)
                {
                    reason = "inf/NaN positions differ";
                }
            }
            else
            {
                var absErr = Math.Abs(a - r);
                var relErr = absErr / (Math.Abs(r) + 1e-6);
                if (!(absErr < tolerance.Abs || relErr < tolerance.Rel))
                {
                    reason = string.Create(
                        CultureInfo.InvariantCulture,
                        $"abs err {absErr:G4} ≥ {tolerance.Abs:G4} and rel err {relErr:G4} ≥ {tolerance.Rel:G4}");
                }

                dot += a * r;
                norms += (a * a) + (r * r);
            }

            if (reason is not null)
            {
                bad++;
                if (first < 0)
                {
                    first = i;
                    firstReason = reason;
                }
            }
        }

        var cosDiff = norms == 0 ? 0 : 1 - (2 * dot / norms);
        var message = new StringBuilder();
        if (bad > 0)
        {
            var where = shape.IsEmpty ? string.Empty : " " + TensorTestUtil.FormatIndex(shape, first);
            message.Append(CultureInfo.InvariantCulture, $"{bad} of {actual.Length} element(s) out of tolerance; first at index {first}{where}: actual {actual[first]:R}, expected {expected[first]:R} ({firstReason}). ");
        }

        if (!(cosDiff <= tolerance.Cos))
        {
            message.Append(CultureInfo.InvariantCulture, $"cosine diff {cosDiff:G4} > {tolerance.Cos:G4}. ");
        }

        var passed = message.Length == 0;
        return new CompareResult(passed, message.ToString().TrimEnd(), bad, cosDiff);
    }

    /// <summary>Asserts <see cref="Check"/> passes; the failure message names the tensor and the case.</summary>
    /// <param name="actual">The values under test.</param>
    /// <param name="expected">The reference values.</param>
    /// <param name="tolerance">The bounds.</param>
    /// <param name="what">The tensor's name ("out", "lse").</param>
    /// <param name="context">The case description (with its seed).</param>
    /// <param name="shape">The logical shape, to format indices (optional).</param>
    public static void AssertClose(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, Tolerance tolerance, string what, string context, ReadOnlySpan<long> shape = default)
    {
        var result = Check(actual, expected, tolerance, shape);
        if (!result.Passed)
        {
            Assert.Fail($"{what}: {result.Message} Case: {context}");
        }
    }
}
