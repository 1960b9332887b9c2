using System.Globalization;
using System.Text.RegularExpressions;
using FlashMla.Cuda;
using FlashMla.Kernels;

namespace FlashMla.Cli.Commands;

/// <summary>One kernel's resources after the driver's JIT compilation of our PTX.</summary>
internal sealed record KernelResources(string Module, string Kernel, int Registers, int LocalBytes, int MaxThreadsPerBlock);

/// <summary>
/// Loads every embedded kernel module on one device (the driver JIT-compiles the PTX, or takes it from its
/// cache) and reports each kernel's registers and local-memory (spill) bytes, plus the JIT info logs.
/// </summary>
internal static partial class KernelReport
{
    public static (IReadOnlyList<KernelResources> Kernels, IReadOnlyDictionary<string, string> JitLogs) Collect(int deviceOrdinal)
    {
        using var context = CudaContext.Create(deviceOrdinal);
        var library = context.Kernels;
        var kernels = new List<KernelResources>();
        foreach (var module in KernelLibrary.AvailableModules(library.Target))
        {
            var ptx = KernelLibrary.ReadPtx(library.Target, module) ?? string.Empty;
            foreach (Match m in EntryPattern().Matches(ptx))
            {
                var name = m.Groups[1].Value;
                var kernel = library.GetKernel(module, name);
                kernels.Add(new KernelResources(module, name, kernel.NumRegisters, kernel.LocalSizeBytes, kernel.MaxThreadsPerBlock));
            }
        }

        return (kernels, new Dictionary<string, string>(library.JitInfoLogs));
    }

    public static string Format(int value) => value.ToString(CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^\.visible \.entry (\w+)\(", RegexOptions.Multiline)]
    private static partial Regex EntryPattern();
}
