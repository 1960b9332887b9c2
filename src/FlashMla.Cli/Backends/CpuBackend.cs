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

    public string TimingNote => "wall clock of the decode call";

    /// <summary>The CPU decoder keeps P in float32 for the PV product.</summary>
    public Tolerance OutputTolerance(ElementType type) => Tolerance.ForOutput(type, roundsProbabilities: false);

    public void Dispose()
    {
    }

    public DecodeOutputs Decode<T>(DecodeCase<T> inputs)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var output = inputs.NewOutput();
        var lse = inputs.NewLse();

        var stopwatch = Stopwatch.StartNew();
        _decoder.Decode(inputs.Q, inputs.KCache, inputs.BlockTable, inputs.CacheSeqlens, output, lse, inputs.Options);
        stopwatch.Stop();

        return new DecodeOutputs
        {
            Output = TestTensors.ToDoubleArray(output),
            Lse = TestTensors.ToDoubleArray(lse),
            ElapsedMs = stopwatch.Elapsed.TotalMilliseconds,
        };
    }
}
