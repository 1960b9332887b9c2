using System.Diagnostics;
using FlashMla.Mla.Cpu;
using FlashMla.Mla.Cuda;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Cli.Backends;

/// <summary>The library's CPU decoder, <see cref="CpuMlaDecoder"/>.</summary>
internal sealed class CpuBackend : IDecodeBackend
{
    private readonly CpuMlaDecoder _decoder = new();

    public string Name => "cpu";

    public string Device => $"CPU, {Environment.ProcessorCount} threads";

    public string KernelPath => "cpu split-kv float32";

    public KernelPathInfo? DescribeKernel(DecodeCaseSpec spec, int maxBlocksPerSequence) => null;

    public long? FreeDeviceBytes => null;

    public string TimingNote => "wall clock of each decode call";

    /// <summary>The CPU decoder keeps P in float32 for the PV product.</summary>
    public Tolerance OutputTolerance(ElementType type) => Tolerance.ForOutput(type, roundsProbabilities: false);

    public void Dispose()
    {
    }

    public DecodeOutputs Decode<T>(DecodeCase<T> inputs, DecodeTiming timing)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(timing);
        var output = inputs.NewOutput();
        var lse = inputs.NewLse();
        double Time()
        {
            var start = Stopwatch.GetTimestamp();
            _decoder.Decode(inputs.Q, inputs.KCache, inputs.BlockTable, inputs.CacheSeqlens, output, lse, inputs.Options);
            return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        var cold = Time();
        for (var i = 0; i < timing.Warmup; i++)
        {
            Time();
        }
        var warm = new double[timing.Repeat];
        for (var i = 0; i < warm.Length; i++)
        {
            warm[i] = Time();
        }

        return new DecodeOutputs
        {
            Output = TestTensors.ToDoubleArray(output),
            Lse = TestTensors.ToDoubleArray(lse),
            ColdMs = cold,
            WarmMs = warm,
        };
    }
}
