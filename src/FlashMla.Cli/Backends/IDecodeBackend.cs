using FlashMla.Cli.Inputs;
using FlashMla.Mla.Cuda;

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

    /// <summary>How <see cref="DecodeOutputs.ElapsedMs"/> is measured.</summary>
    string TimingNote { get; }

    /// <summary>Runs one decode step; the outputs are widened to float.</summary>
    DecodeOutputs Decode(DecodeInputs inputs);
}
