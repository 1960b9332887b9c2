using System.Diagnostics.CodeAnalysis;
using FlashMla.Cuda;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;
using FlashMla.Testing;

namespace FlashMla.Cli.Backends;

/// <summary>A context on device 0, the CUDA decoder and a non-blocking stream; the CLI's handle on the GPU.</summary>
internal sealed class CudaSession : IDisposable
{
    private CudaSession(CudaContext context, CudaMlaDecoder decoder, CudaStream stream)
    {
        Context = context;
        Decoder = decoder;
        Stream = stream;
    }

    public CudaContext Context { get; }

    public CudaMlaDecoder Decoder { get; }

    public CudaStream Stream { get; }

    public string GpuName => Context.Device.Name;

    public string DeviceDescription => $"{Context.Device.Name}, compute capability {Context.Device.ComputeCapability}";

    /// <summary>The decoder's kernel paths that can run on this device, e.g. "mma.sync (sm_90a)".</summary>
    public string KernelPath =>
        string.Join(", ", Decoder.KernelPaths.Where(p => p.IsAvailable).Select(p => $"{p.Path} ({p.Target})"));

    /// <summary>The kernel one case runs with a block table of <paramref name="maxBlocksPerSequence"/> columns, as the decoder reports it.</summary>
    public KernelPathInfo DescribeKernel(DecodeCaseSpec spec, int maxBlocksPerSequence) => Decoder.DescribeKernel(Problem(spec, maxBlocksPerSequence));

    /// <summary><see cref="DescribeKernel"/> as text.</summary>
    public string KernelPathFor(DecodeCaseSpec spec, int maxBlocksPerSequence) => DescribeKernel(spec, maxBlocksPerSequence).ToString();

    /// <summary>
    /// The decode problem of a case: its shape, element type and dense KV format (contiguous
    /// tensors), with the block table's width, on which the choice of kernel path depends.
    /// </summary>
    public static MlaDecodeProblem Problem(DecodeCaseSpec spec, int maxBlocksPerSequence)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var shape = new MlaDecodeShape(
            spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads, spec.HeadDim, DecodeCaseSpec.HeadDimV, NumBlocks: 1, spec.PageBlockSize, Math.Max(1, maxBlocksPerSequence));
        return new MlaDecodeProblem(shape, spec.ElementType, KvCacheFormat.Dense(spec.ElementType, spec.HeadDim), spec.ElementType);
    }

    /// <summary>The environment variable that pins the decoder to kernel paths (comma-separated names, in order).</summary>
    public const string KernelPathsVariable = "FLASHMLA_KERNEL_PATHS";

    /// <summary>Set to <c>combine</c>, the decoder merges split requests with the separate combine kernel instead of inside the decode kernel (<see cref="CudaMlaDecoder.MergeInKernel"/>), for comparisons.</summary>
    public const string MergeVariable = "FLASHMLA_SPLIT_MERGE";

    /// <summary>Set to <c>0</c>, decode kernels are launched without programmatic dependent launch (<see cref="CudaMlaDecoder.DependentLaunch"/>), for comparisons.</summary>
    public const string DependentLaunchVariable = "FLASHMLA_DEPENDENT_LAUNCH";

    /// <summary>The paths <see cref="KernelPathsVariable"/> names, or null when it is unset.</summary>
    public static string[]? PinnedKernelPaths() =>
        Environment.GetEnvironmentVariable(KernelPathsVariable) is { Length: > 0 } value
            ? value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            : null;

    public static bool TryOpen([NotNullWhen(true)] out CudaSession? session, out string reason)
    {
        session = null;
        if (!CudaDriver.TryLoad(out var driver, out reason))
        {
            reason = "no CUDA device: " + CudaProbe.FirstLine(reason);
            return false;
        }

        CudaContext? context = null;
        CudaMlaDecoder? decoder = null;
        try
        {
            if (driver.DeviceCount == 0)
            {
                reason = "no CUDA device: the driver reports none";
                return false;
            }
            context = new CudaContext(driver.GetDevice(0));
            var pinned = PinnedKernelPaths();
            decoder = pinned is null ? new CudaMlaDecoder(context) : new CudaMlaDecoder(context, pinned);
            decoder.MergeInKernel = !string.Equals(Environment.GetEnvironmentVariable(MergeVariable), "combine", StringComparison.Ordinal);
            decoder.DependentLaunch = Environment.GetEnvironmentVariable(DependentLaunchVariable) != "0";
            var stream = CudaStream.Create(context, nonBlocking: true);
            session = new CudaSession(context, decoder, stream);
            reason = string.Empty;
            return true;
        }
        catch (Exception e) when (e is CudaException or NotSupportedException or InvalidOperationException or ArgumentException)
        {
            decoder?.Dispose();
            context?.Dispose();
            reason = $"{e.GetType().Name}: {e.Message}";
            return false;
        }
    }

    public void Dispose()
    {
        Stream.Dispose();
        Decoder.Dispose();
        Context.Dispose();
    }
}
