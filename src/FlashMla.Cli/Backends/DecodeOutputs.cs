namespace FlashMla.Cli.Backends;

/// <summary>
/// How a backend times a decode: the first (cold) call is timed on its own, then
/// <see cref="Warmup"/> calls run untimed, then <see cref="Repeat"/> calls are timed one by one;
/// the warm time is their median. Every call writes the same outputs.
/// </summary>
internal sealed record DecodeTiming(int Warmup, int Repeat)
{
    /// <summary>One call, timed (verify's).</summary>
    public static DecodeTiming ColdOnly { get; } = new(0, 0);
}

/// <summary>Outputs of one decode step, widened to double. Output [b, s_q, h_q, 512], lse [b, h_q, s_q].</summary>
internal sealed class DecodeOutputs
{
    public required double[] Output { get; init; }
    public required double[] Lse { get; init; }
    /// <summary>The time of the first decode call (cold: first use of the decoder and its buffers), in milliseconds.</summary>
    public double ColdMs { get; init; }

    /// <summary>The times of the timed calls after the warm-up (<see cref="DecodeTiming.Repeat"/> of them), in milliseconds.</summary>
    public IReadOnlyList<double> WarmMs { get; init; } = [];

    /// <summary>The warm time: the median of <see cref="WarmMs"/> (NaN when none was timed).</summary>
    public double WarmMedianMs => Bench.BenchFormulas.Median(WarmMs);

    /// <summary>Σ|out| in double.</summary>
    public double AbsSum()
    {
        double sum = 0;
        foreach (var v in Output)
        {
            sum += Math.Abs(v);
        }
        return sum;
    }

    /// <summary>Σ lse over the finite entries, in double.</summary>
    public double FiniteLseSum()
    {
        double sum = 0;
        foreach (var v in Lse)
        {
            if (double.IsFinite(v))
            {
                sum += v;
            }
        }
        return sum;
    }

    public int NonFiniteOutputCount() => Output.Count(v => !double.IsFinite(v));
}
