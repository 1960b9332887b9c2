using System.Globalization;
using System.Text;
using FlashMla.Tensors;

namespace FlashMla.Testing;

/// <summary>The outcome of a comparison.</summary>
/// <param name="Passed">Whether every check passed.</param>
/// <param name="Message">The failure description (empty when passed).</param>
/// <param name="Count">The number of elements compared.</param>
/// <param name="SpecialMismatches">Positions where ±∞/NaN of the values and the reference differ.</param>
/// <param name="ElementFailures">Finite positions that fail both the absolute and the relative bound.</param>
/// <param name="FirstBadIndex">The first position that failed either way (−1: none).</param>
/// <param name="MaxAbsError">The largest absolute error over the finite positions.</param>
/// <param name="MaxRelError">The largest relative error over the finite positions.</param>
/// <param name="CosineDiff">The cosine difference over the finite positions.</param>
/// <param name="Tolerance">The bounds.</param>
public sealed record CompareResult(
    bool Passed,
    string Message,
    long Count,
    long SpecialMismatches,
    long ElementFailures,
    long FirstBadIndex,
    double MaxAbsError,
    double MaxRelError,
    double CosineDiff,
    Tolerance Tolerance)
{
    /// <summary>The number of elements out of tolerance or with mismatched ±∞/NaN.</summary>
    public long BadElements => SpecialMismatches + ElementFailures;

    /// <summary>Whether the cosine difference is within <see cref="Tolerance"/>.</summary>
    public bool CosineDiffPasses => CosineDiff <= Tolerance.Cos;
}

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
            return new CompareResult(false, $"length mismatch: actual {actual.Length}, expected {expected.Length}", actual.Length, 0, actual.Length, 0, double.NaN, double.NaN, double.NaN, tolerance);
        }

        long special = 0, failures = 0;
        var first = -1;
        var firstReason = string.Empty;
        double dot = 0, norms = 0, maxAbs = 0, maxRel = 0;
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
                    special++;
                    reason = "inf/NaN positions differ";
                }
            }
            else
            {
                var absErr = Math.Abs(a - r);
                var relErr = absErr / (Math.Abs(r) + 1e-6);
                maxAbs = Math.Max(maxAbs, absErr);
                maxRel = Math.Max(maxRel, relErr);
                if (!(absErr < tolerance.Abs || relErr < tolerance.Rel))
                {
                    failures++;
                    reason = string.Create(
                        CultureInfo.InvariantCulture,
                        $"abs err {absErr:G4} ≥ {tolerance.Abs:G4} and rel err {relErr:G4} ≥ {tolerance.Rel:G4}");
                }

                dot += a * r;
                norms += (a * a) + (r * r);
            }

            if (reason is not null && first < 0)
            {
                first = i;
                firstReason = reason;
            }
        }

        var cosDiff = norms == 0 ? 0 : 1 - (2 * dot / norms);
        var message = new StringBuilder();
        var bad = special + failures;
        if (bad > 0)
        {
            var where = shape.IsEmpty ? string.Empty : " " + TestTensors.FormatIndex(shape, first);
            message.Append(CultureInfo.InvariantCulture, $"{bad} of {actual.Length} element(s) out of tolerance; first at index {first}{where}: actual {actual[first]:R}, expected {expected[first]:R} ({firstReason}). ");
        }

        if (!(cosDiff <= tolerance.Cos))
        {
            message.Append(CultureInfo.InvariantCulture, $"cosine diff {cosDiff:G4} > {tolerance.Cos:G4}. ");
        }

        var passed = message.Length == 0;
        return new CompareResult(passed, message.ToString().TrimEnd(), actual.Length, special, failures, first, maxAbs, maxRel, cosDiff, tolerance);
    }

    /// <summary>Asserts <see cref="Check"/> passes; the failure message names the tensor and the case.</summary>
    /// <param name="actual">The values under test.</param>
    /// <param name="expected">The reference values.</param>
    /// <param name="tolerance">The bounds.</param>
    /// <param name="what">The tensor's name ("out", "lse").</param>
    /// <param name="context">The case description (with its seed).</param>
    /// <param name="shape">The logical shape, to format indices (optional).</param>
    /// <exception cref="CheckFailedException">The comparison failed.</exception>
    public static void AssertClose(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, Tolerance tolerance, string what, string context, ReadOnlySpan<long> shape = default)
    {
        var result = Check(actual, expected, tolerance, shape);
        if (!result.Passed)
        {
            throw new CheckFailedException($"{what}: {result.Message} Case: {context}");
        }
    }

    /// <summary>
    /// Asserts a decode matches its case's float64 reference: the output within
    /// <paramref name="outputTolerance"/>, the LSE within <see cref="Tolerance.Lse"/>.
    /// </summary>
    /// <typeparam name="T">The case's element type (and the output's).</typeparam>
    /// <param name="decodeCase">The case.</param>
    /// <param name="output">The decode's output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">The decode's LSE, [b, h_q, s_q].</param>
    /// <param name="outputTolerance">The output bound (<see cref="Tolerance.ForOutput"/>).</param>
    /// <exception cref="CheckFailedException">A comparison failed; the message names the tensor and the case.</exception>
    public static void AssertDecode<T>(DecodeCase<T> decodeCase, HostTensor<T> output, HostTensor<float> lse, Tolerance outputTolerance)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(decodeCase);
        AssertDecode(NaiveMlaReference.Compute(decodeCase), output, lse, outputTolerance, decodeCase.Description);
    }

    /// <summary>
    /// Asserts a decode matches a reference: the output within <paramref name="outputTolerance"/>,
    /// the LSE within <see cref="Tolerance.Lse"/>.
    /// </summary>
    /// <typeparam name="TOut">The output's element type.</typeparam>
    /// <param name="reference">The reference.</param>
    /// <param name="output">The decode's output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">The decode's LSE, [b, h_q, s_q].</param>
    /// <param name="outputTolerance">The output bound (<see cref="Tolerance.ForOutput"/>).</param>
    /// <param name="context">The case description (with its seed).</param>
    /// <exception cref="CheckFailedException">A comparison failed; the message names the tensor and the case.</exception>
    public static void AssertDecode<TOut>(ReferenceResult reference, HostTensor<TOut> output, HostTensor<float> lse, Tolerance outputTolerance, string context)
        where TOut : unmanaged
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(lse);
        AssertClose(TestTensors.ToDoubleArray(output), reference.Output, outputTolerance, "out", context, output.Layout.Shape);
        AssertClose(TestTensors.ToDoubleArray(lse), reference.Lse, Tolerance.Lse, "lse", context, lse.Layout.Shape);
    }
}
