using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Cli.Bench;

/// <summary>
/// The built-in benchmark suites. They are the grids of ../shared/bench/cases (throughput.json,
/// latency.json) and their cases carry the same names, so results are comparable whether they
/// come from a suite or from a cases file. Built-in lengths are drawn from the seed (variable
/// lengths: max(N(s_k, s_k/2), s_q)), so a varlen case has the same name but not the same lengths
/// as the file's.
/// </summary>
internal static class BenchSuites
{
    public static readonly string[] Names = ["single", "throughput", "latency"];

    /// <summary>The defaults of the bench's shape options (the single case).</summary>
    public static DecodeCaseSpec Defaults { get; } = new() { Batch = 128, SeqlenK = 4096, QueryHeads = 128, QueryLength = 1 };

    /// <summary>
    /// throughput: b 128, s_q ∈ {1,2}, h_q ∈ {16,32,64,128}, s_k ∈ {4096,8192,16384}, fixed and variable lengths.
    /// latency: b ∈ {1,4,16,32}, s_q 1, h_q ∈ {16,128}, s_k ∈ {1024,4096,32768}, then the MTP case
    /// (b 64, s_q 4, h_q 128, s_k 4096, causal).
    /// single: <paramref name="template"/> alone.
    /// Page size, h_kv, dtype, causal and seed come from <paramref name="template"/>.
    /// </summary>
    public static IReadOnlyList<BenchCase> Cases(string suite, DecodeCaseSpec template)
    {
        ArgumentNullException.ThrowIfNull(template);
        var cases = new List<BenchCase>();
        switch (suite)
        {
            case "throughput":
                // The order of ../shared/bench/cases/throughput.json.
                foreach (var sk in (int[])[4096, 8192, 16384])
                {
                    foreach (var sq in (int[])[1, 2])
                    {
                        foreach (var hq in (int[])[16, 32, 64, 128])
                        {
                            foreach (var varlen in (bool[])[false, true])
                            {
                                var spec = template with { Batch = 128, QueryLength = sq, QueryHeads = hq, SeqlenK = sk, Varlen = varlen };
                                cases.Add(Make(ThroughputName(spec), suite, spec));
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
                            var spec = template with { Batch = b, QueryLength = 1, QueryHeads = hq, SeqlenK = sk, Varlen = false };
                            cases.Add(Make(LatencyName(spec), suite, spec));
                        }
                    }
                }
                var mtp = template with { Batch = 64, QueryLength = 4, QueryHeads = 128, SeqlenK = 4096, Varlen = false, Causal = true };
                cases.Add(Make(LatencyName(mtp, mtp: true), suite, mtp));
                break;
            case "single":
                cases.Add(Make(ThroughputName(template), suite, template));
                break;
            default:
                throw new CliUsageException($"unknown suite '{suite}' (expected {string.Join(", ", Names)})");
        }
        return cases;
    }

    /// <summary>"b128 s_q1 h16 s_k4096 fixed" / "… var", then <see cref="Extras"/>.</summary>
    public static string ThroughputName(DecodeCaseSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return $"b{spec.Batch} s_q{spec.QueryLength} h{spec.QueryHeads} s_k{spec.SeqlenK} {(spec.Varlen ? "var" : "fixed")}{Extras(spec)}";
    }

    /// <summary>
    /// "b1 h16 s_k1024" (s_q is named only when it is not 1), then <see cref="Extras"/>; the MTP
    /// case ends in " (MTP)": "b64 s_q4 h128 s_k4096 causal (MTP)".
    /// </summary>
    public static string LatencyName(DecodeCaseSpec spec, bool mtp = false)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var sq = spec.QueryLength != 1 ? $" s_q{spec.QueryLength}" : "";
        return $"b{spec.Batch}{sq} h{spec.QueryHeads} s_k{spec.SeqlenK}{(spec.Varlen ? " var" : "")}{Extras(spec)}{(mtp ? " (MTP)" : "")}";
    }

    /// <summary>
    /// What the shared cases leave unsaid because it is always so there: " causal" when causal,
    /// then " h_kv{n}", " page{n}" and the dtype where they differ from h_kv 1, page 64, bf16.
    /// </summary>
    private static string Extras(DecodeCaseSpec spec) =>
        (spec.Causal ? " causal" : "") +
        (spec.KvHeads != 1 ? $" h_kv{spec.KvHeads}" : "") +
        (spec.PageBlockSize != 64 ? $" page{spec.PageBlockSize}" : "") +
        (spec.ElementType != ElementType.BFloat16 ? $" {spec.ElementType.ShortName()}" : "");

    /// <summary>A case of the shape options' sizes, checked before its lengths are drawn and again with them.</summary>
    private static BenchCase Make(string name, string suite, DecodeCaseSpec spec)
    {
        CaseBudget.CheckBenchHost(spec, null, ShapeNames.Options, Defaults, CaseBudget.HostBudgetBytes);
        var lengths = RandomInputs.Lengths(spec, new Gaussian(spec.Seed));
        CaseBudget.CheckBenchHost(spec, lengths, ShapeNames.Options, Defaults, CaseBudget.HostBudgetBytes);
        return new BenchCase
        {
            Name = name,
            Suite = suite,
            Spec = spec,
            SeqLens = lengths,
        };
    }
}
