using System.Globalization;
using FlashMla.Cuda;
using FlashMla.Kernels;

namespace FlashMla.Cli.Commands;

/// <summary>One kernel's resources after the driver's JIT compilation of our PTX, and what the kernel says about itself.</summary>
internal sealed record KernelResources(KernelDescriptor Descriptor, int Registers, int LocalBytes, int MaxThreadsPerBlock)
{
    public string Module => Descriptor.Module;

    public string Kernel => Descriptor.Entry;
}

/// <summary>
/// Loads every embedded kernel module on one device (the driver JIT-compiles the PTX, or takes it from its
/// cache) and reports each kernel's registers and local-memory (spill) bytes, plus the JIT info logs.
/// </summary>
internal static class KernelReport
{
    public static (IReadOnlyList<KernelResources> Kernels, IReadOnlyDictionary<string, string> JitLogs) Collect(int deviceOrdinal)
    {
        using var context = CudaContext.Create(deviceOrdinal);
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

        return (kernels, new Dictionary<string, string>(library.JitInfoLogs));
    }

    public static string Format(int value) => value.ToString(CultureInfo.InvariantCulture);
}
