using System.CommandLine;
using System.Globalization;
using FlashMla.Cli.Backends;
using FlashMla.Cli.Output;

namespace FlashMla.Cli.Commands;

/// <summary><c>flashmla info</c>: the CUDA devices found, or why none was.</summary>
internal static class InfoCommand
{
    public static Command Create(CliContext context)
    {
        var format = CliOptions.Format();
        var command = new Command("info", "Show the CUDA devices found (driver, compute capability, SMs, memory, L2), or why none was found")
        {
            format,
        };
        command.SetAction(parseResult => CliApp.Guard(context, () => Run(context, CliOptions.GetFormat(parseResult, format))));
        return command;
    }

    private static int Run(CliContext context, OutputFormat format)
    {
        var probe = CudaProbe.Probe();
        if (format == OutputFormat.Json)
        {
            context.Out.Write(JsonOut.Render(w =>
            {
                w.WriteStartObject();
                w.WriteBoolean("cuda_available", probe.Devices.Count > 0);
                w.WriteBoolean("driver_loaded", probe.DriverLoaded);
                if (probe.LibraryName is { } library)
                {
                    w.WriteString("driver_library", library);
                }
                w.WriteNumber("driver_version", probe.DriverVersion);
                w.WriteString("driver_version_text", probe.DriverVersionText);
                if (probe.Reason is { } reason)
                {
                    w.WriteString("reason", reason);
                }
                w.WriteStartArray("load_trace");
                foreach (var line in probe.LoadTrace)
                {
                    w.WriteStringValue(line);
                }
                w.WriteEndArray();
                w.WriteStartArray("devices");
                foreach (var d in probe.Devices)
                {
                    w.WriteStartObject();
                    w.WriteNumber("ordinal", d.Ordinal);
                    w.WriteString("name", d.Name);
                    w.WriteString("compute_capability", d.ComputeCapability);
                    w.WriteNumber("sm_count", d.MultiprocessorCount);
                    w.WriteNumber("memory_bytes", d.TotalMemoryBytes);
                    w.WriteNumber("l2_bytes", d.L2CacheBytes);
                    if (d.KernelTarget is { } target)
                    {
                        w.WriteString("kernel_target", target);
                    }
                    else
                    {
                        w.WriteNull("kernel_target");
                    }
                    if (d.Problem is { } problem)
                    {
                        w.WriteString("problem", problem);
                    }
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }));
            return ExitCodes.Success;
        }

        if (probe.Devices.Count == 0)
        {
            context.Out.WriteLine($"no CUDA device: {probe.Reason ?? "the driver reports no devices"}");
            if (probe.DriverLoaded)
            {
                context.Out.WriteLine($"driver version: {probe.DriverVersionText}");
            }
            if (probe.LoadTrace.Count > 0)
            {
                context.Out.WriteLine("driver library load trace:");
                foreach (var line in probe.LoadTrace)
                {
                    context.Out.WriteLine("  " + line);
                }
            }
            context.Out.WriteLine("The CPU backend is available: flashmla decode --backend cpu");
            return ExitCodes.Success;
        }

        context.Out.WriteLine(
            $"CUDA driver {probe.DriverVersionText} ({probe.DriverVersion.ToString(CultureInfo.InvariantCulture)}) from {probe.LibraryName}, " +
            $"{probe.Devices.Count} device(s)");
        var table = TableOut.Create("#", "name", "compute capability", "SMs", "memory", "L2", "kernels");
        foreach (var d in probe.Devices)
        {
            table.Row(
                d.Ordinal.ToString(CultureInfo.InvariantCulture),
                d.Name,
                d.ComputeCapability,
                d.MultiprocessorCount.ToString(CultureInfo.InvariantCulture),
                TableOut.Bytes(d.TotalMemoryBytes),
                TableOut.Bytes(d.L2CacheBytes),
                d.KernelTarget ?? "unsupported (needs compute capability >= 8.0)");
        }
        context.OutConsole.Write(table);
        foreach (var d in probe.Devices)
        {
            if (d.Problem is { } problem)
            {
                context.Out.WriteLine($"device {d.Ordinal}: {problem}");
            }
        }
        return ExitCodes.Success;
    }
}
