using System.Globalization;
using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Mla.Cuda;

namespace FlashMla.Cli.Commands;

/// <summary>One kernel's resources after the driver's JIT compilation of our PTX, and what the kernel says about itself.</summary>
internal sealed record KernelResources(KernelDescriptor Descriptor, int Registers, int LocalBytes, int MaxThreadsPerBlock)
{
    public string Module => Descriptor.Module;

    public string Kernel => Descriptor.Entry;
}

/// <summary>What <c>flashmla info --kernels</c> found on a device: every kernel, the JIT logs, and the decoder's kernel paths.</summary>
internal sealed record KernelReportResult(
    IReadOnlyList<KernelResources> Kernels,
    IReadOnlyDictionary<string, string> JitLogs,
    IReadOnlyList<KernelPathStatus> Paths);

/// <summary>
/// Loads every embedded kernel module on one device (the driver JIT-compiles the PTX, or takes it from its
/// cache) and reports each kernel's descriptor, registers and local-memory (spill) bytes, the JIT info logs,
/// and which kernel paths a decoder can run there.
/// </summary>
internal static class KernelReport
{
    public static KernelReportResult Collect(int deviceOrdinal)
    {
        using var context = CudaContext.Create(deviceOrdinal);
        IReadOnlyList<KernelPathStatus> paths;
        try
        {
            using var decoder = new CudaMlaDecoder(context);
            paths = decoder.KernelPaths;
        }
        catch (NotSupportedException e)
        {
            paths = [.. CudaMlaDecoder.DescribePaths(context.Kernels.Target).Select(p => p with { Reason = p.Reason ?? e.Message })];
        }

        var library = context.Kernels;
        var kernels = new List<KernelResources>();
        foreach (var module in KernelLibrary.AvailableModules(library.Target))
        {
            foreach (var entry in library.GetEntries(module))
            {
                var kernel = entry.Kernel;
                kernels.Add(new KernelResources(entry.Descriptor, kernel.NumRegisters, kernel.LocalSizeBytes, kernel.MaxThreadsPerBlock));
            }
        }

        return new KernelReportResult(kernels, new Dictionary<string, string>(library.JitInfoLogs), paths);
    }

    public static string Format(int value) => value.ToString(CultureInfo.InvariantCulture);
}
