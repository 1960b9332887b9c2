namespace FlashMla.Cli.Backends;

/// <summary>Outputs of one decode step, widened to double. Output [b, s_q, h_q, 512], lse [b, h_q, s_q].</summary>
internal sealed class DecodeOutputs
{
    public required double[] Output { get; init; }
    public required double[] Lse { get; init; }
    /// <summary>Wall or device time of the decode call, in milliseconds.</summary>
    public double ElapsedMs { get; init; }

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
