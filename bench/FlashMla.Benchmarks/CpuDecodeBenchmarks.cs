using BenchmarkDotNet.Attributes;
using FlashMla.Cli.Bench;
using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Benchmarks;

/// <summary>
/// Warm decode of one layer on the CPU backend with a plan (the steady state of an inference
/// loop): bf16, s_q = 1, h_kv = 1, page 64, for the two shapes of the CPU targets.
/// </summary>
public class CpuDecodeBenchmarks : IFlopCount
{
    private readonly CpuMlaDecoder _decoder = new();
    private DecodeCase<BFloat16> _case = null!;
    private HostKvCache<BFloat16> _cache = null!;
    private CpuDecodePlan _plan = null!;
    private HostTensor<BFloat16> _output = null!;
    private HostTensor<float> _lse = null!;
    private MlaDecodeOptions _options = null!;

    /// <summary>The shape: "b{batch}-h{heads}-s{seqlen}".</summary>
    [Params("b1-h16-s32768", "b4-h128-s4096")]
    public string Shape { get; set; } = "b1-h16-s32768";

    /// <summary>The case of <see cref="Shape"/>.</summary>
    public DecodeCaseSpec Spec
    {
        get
        {
            var parts = Shape.Split('-');
            return new DecodeCaseSpec
            {
                Batch = int.Parse(parts[0][1..], System.Globalization.CultureInfo.InvariantCulture),
                QueryLength = 1,
                QueryHeads = int.Parse(parts[1][1..], System.Globalization.CultureInfo.InvariantCulture),
                KvHeads = 1,
                SeqlenK = int.Parse(parts[2][1..], System.Globalization.CultureInfo.InvariantCulture),
                PageBlockSize = 64,
                ElementType = ElementType.BFloat16,
                Seed = 9,
            };
        }
    }

    [GlobalSetup]
    public void Setup()
    {
        _case = DecodeCase<BFloat16>.Create(Spec);
        _cache = HostKvCache<BFloat16>.Dense(_case.KCache);
        _plan = _decoder.CreatePlan(_case.Spec.Batch, _case.Spec.QueryLength, _case.Spec.QueryHeads, _case.Spec.KvHeads);
        _decoder.UpdatePlan(_plan, _case.CacheSeqlens, _case.MaxBlocksPerSequence, _case.Spec.PageBlockSize);
        _output = _case.NewOutput();
        _lse = _case.NewLse();
        _options = _case.Options;
    }

    /// <summary>One layer's decode with the step's plan.</summary>
    [Benchmark]
    public void Decode() =>
        _decoder.Decode(_case.Q, _cache, _case.BlockTable, _case.CacheSeqlens, _plan, _output, _lse, _options);

    /// <inheritdoc />
    public double FlopsPerCall(string method) => BenchFormulas.Flops(Spec, Spec.SeqlenK);
}
