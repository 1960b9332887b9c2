using FlashMla.Cli.Inputs;

namespace FlashMla.Cli.Bench;

/// <summary>The built-in benchmark suites.</summary>
internal static class BenchSuites
{
    public static readonly string[] Names = ["single", "throughput", "latency"];

    /// <summary>
    /// throughput: b 128, s_q ∈ {1,2}, h_q ∈ {16,32,64,128}, s_k ∈ {4096,8192,16384}, fixed and variable lengths.
    /// latency: b ∈ {1,4,16,32}, s_q 1, h_q ∈ {16,128}, s_k ∈ {1024,4096,32768}.
    /// Page size, h_kv, dtype, causal and seed come from <paramref name="template"/>.
    /// </summary>
    public static IReadOnlyList<DecodeCaseSpec> Cases(string suite, DecodeCaseSpec template)
    {
        ArgumentNullException.ThrowIfNull(template);
        var cases = new List<DecodeCaseSpec>();
        switch (suite)
        {
            case "throughput":
                foreach (var sq in (int[])[1, 2])
                {
                    foreach (var hq in (int[])[16, 32, 64, 128])
                    {
                        foreach (var sk in (int[])[4096, 8192, 16384])
                        {
                            foreach (var varlen in (bool[])[false, true])
                            {
                                cases.Add(template with { Batch = 128, SeqQ = sq, HeadsQ = hq, SeqLenK = sk, Varlen = varlen });
                            }
                        }
                    }
                }
                break;
            case "latency":
                foreach (var b in (int[])[1, 4, 16, 32])
                {
                    foreach (var hq in (int[])[16, 128])
                    {
                        foreach (var sk in (int[])[1024, 4096, 32768])
                        {
                            cases.Add(template with { Batch = b, SeqQ = 1, HeadsQ = hq, SeqLenK = sk, Varlen = false });
                        }
                    }
                }
                break;
            default:
                cases.Add(template);
                break;
        }
        return cases;
    }
}
