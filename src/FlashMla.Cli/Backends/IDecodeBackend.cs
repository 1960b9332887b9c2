using FlashMla.Mla.Cuda;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Cli.Backends;

/// <summary>A decoder the CLI can run on host inputs.</summary>
internal interface IDecodeBackend : IDisposable
{
    /// <summary>"cpu" or "cuda".</summary>
    string Name { get; }

    /// <summary>Where it runs, e.g. "CPU, 2 threads" or the GPU name.</summary>
    string Device { get; }

    /// <summary>The decoder's code paths, e.g. "mma.sync (sm_90a)" or "cpu split-kv float32".</summary>
    string KernelPath { get; }

    /// <summary>The kernel a case runs on this backend, as the library reports it; null on the CPU.</summary>
    KernelPathInfo? DescribeKernel(DecodeCaseSpec spec, int maxBlocksPerSequence);

    /// <summary>The free memory of the backend's device, in bytes; null on the CPU (the host budget applies there).</summary>
    long? FreeDeviceBytes { get; }

    /// <summary>How each call of <see cref="DecodeOutputs.ColdMs"/> and <see cref="DecodeOutputs.WarmMs"/> is timed.</summary>
    string TimingNote { get; }

    /// <summary>The output bound this decoder is held to for an element type (<see cref="Tolerance.ForOutput"/>).</summary>
    Tolerance OutputTolerance(ElementType type);

    /// <summary>Runs a decode step as <paramref name="timing"/> says; the outputs are widened to double.</summary>
    DecodeOutputs Decode<T>(DecodeCase<T> inputs, DecodeTiming timing)
        where T : unmanaged;

    /// <summary><see cref="Decode{T}"/> on a case of either element type.</summary>
    DecodeOutputs Decode(DecodeCase inputs, DecodeTiming timing) => inputs switch
    {
        DecodeCase<BFloat16> c => Decode(c, timing),
        DecodeCase<Half> c => Decode(c, timing),
        null => throw new ArgumentNullException(nameof(inputs)),
        _ => throw new ArgumentException($"unsupported case {inputs.GetType().Name}", nameof(inputs)),
    };
}
