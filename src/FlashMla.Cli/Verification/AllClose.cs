namespace FlashMla.Cli.Verification;

/// <summary>FlashMLA's tolerances for the dense decode test.</summary>
internal readonly record struct Tolerance(double Abs, double Rel, double CosDiff)
{
    /// <summary>out: abs 8e-4, rel 2.01/128, cosine diff 5e-6.</summary>
    public static Tolerance Output => new(8e-4, 2.01 / 128, 5e-6);

    /// <summary>lse: abs 1e-6, rel 8.01/65536, cosine diff 1e-7.</summary>
    public static Tolerance Lse => new(1e-6, 8.01 / 65536, 1e-7);
}

/// <summary>Result of comparing one tensor against the reference.</summary>
internal sealed record CompareResult
{
    public required string Name { get; init; }
    public long Count { get; init; }
    /// <summary>Positions where ±inf/NaN of actual and reference differ.</summary>
    public long SpecialMismatches { get; init; }
    /// <summary>Finite positions failing both the absolute and the relative tolerance.</summary>
    public long ElementFailures { get; init; }
    public long FirstFailureIndex { get; init; } = -1;
    public double MaxAbsError { get; init; }
    public double MaxRelError { get; init; }
    public double CosDiff { get; init; }
    public required Tolerance Tolerance { get; init; }

    public bool CosDiffPasses => CosDiff <= Tolerance.CosDiff;

    public bool Passed => SpecialMismatches == 0 && ElementFailures == 0 && CosDiffPasses;
}

/// <summary>
/// The element-wise check of FlashMLA's tests: an element passes when abs_err &lt; abs_tol or
/// rel_err &lt; rel_tol with rel_err = |a − r| / (|r| + 1e−6); ±inf and NaN must sit at the same
/// positions; then the cosine difference 1 − 2Σar / Σ(a² + r²) over the finite positions must not
/// exceed the tolerance.
/// </summary>
internal static class AllClose
{
    public static CompareResult Compare(string name, ReadOnlySpan<float> actual, ReadOnlySpan<double> reference, Tolerance tolerance)
    {
        if (actual.Length != reference.Length)
        {
            throw new ArgumentException($"{name}: length {actual.Length} != reference length {reference.Length}", nameof(actual));
        }
        long special = 0, failures = 0, first = -1;
        double maxAbs = 0, maxRel = 0, dot = 0, norms = 0;
        for (var i = 0; i < actual.Length; i++)
        {
            double a = actual[i], r = reference[i];
            var aFinite = double.IsFinite(a);
            var rFinite = double.IsFinite(r);
            if (!aFinite || !rFinite)
            {
                var same = (double.IsNaN(a) && double.IsNaN(r)) || (double.IsInfinity(a) && a == r);
                if (!same)
                {
                    special++;
                    if (first < 0)
                    {
                        first = i;
                    }
                }
                continue;
            }
            var abs = Math.Abs(a - r);
            var rel = abs / (Math.Abs(r) + 1e-6);
            maxAbs = Math.Max(maxAbs, abs);
            maxRel = Math.Max(maxRel, rel);
            if (!(abs < tolerance.Abs) && !(rel < tolerance.Rel))
            {
                failures++;
                if (first < 0)
                {
                    first = i;
                }
            }
            dot += a * r;
            norms += (a * a) + (r * r);
        }
        var cosDiff = norms > 0 ? 1.0 - (2.0 * dot / norms) : 0.0;
        return new CompareResult
        {
            Name = name,
            Count = actual.Length,
            SpecialMismatches = special,
            ElementFailures = failures,
            FirstFailureIndex = first,
            MaxAbsError = maxAbs,
            MaxRelError = maxRel,
            CosDiff = cosDiff,
            Tolerance = tolerance,
        };
    }
}
