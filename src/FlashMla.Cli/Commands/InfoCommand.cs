using System.CommandLine;
using System.Globalization;
using FlashMla.Cli.Backends;
using FlashMla.Cli.Output;
using FlashMla.Mla.Cuda;

namespace FlashMla.Cli.Commands;

/// <summary><c>flashmla info</c>: the CUDA devices found, or why none was.</summary>
internal static class InfoCommand
{
    public static Command Create(CliContext context)
    {
        var format = CliOptions.Format();
        var kernels = new Option<bool>("--kernels")
        {
            Description = "Also JIT-compile the kernels on device 0 and show each kernel's registers and spill (local) bytes and the driver's JIT log",
        };
        var command = new Command("info", "Show the CUDA devices found (driver, compute capability, SMs, memory, L2), or why none was found")
        {
            format,
            kernels,
        };
        command.SetAction(parseResult => CliApp.Guard(
            context, () => Run(context, CliOptions.GetFormat(parseResult, format), parseResult.GetValue(kernels))));
        return command;
    }

    private static int Run(CliContext context, OutputFormat format, bool showKernels)
    {
        var probe = CudaProbe.Probe();
        var report = showKernels && probe.Devices.Count > 0 && probe.Devices[0].KernelTarget is not null
            ? KernelReport.Collect(0)
            : null;

        // The registered kernel paths per device: whether their modules are built for its target, or,
        // for device 0 with --kernels, what a decoder found there.
        IReadOnlyList<KernelPathStatus> PathsOf(CudaDeviceInfo d) =>
            d.Ordinal == 0 && report is not null ? report.Paths
            : d.KernelTarget is { } target ? CudaMlaDecoder.DescribePaths(target)
            : [];
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
                    w.WriteStartArray("kernel_paths");
                    foreach (var p in PathsOf(d))
                    {
                        w.WriteStartObject();
                        w.WriteString("path", p.Path);
                        w.WriteString("module", p.Module);
                        w.WriteString("target", p.Target);
                        w.WriteBoolean("available", p.IsAvailable);
                        if (p.Reason is { } why)
                        {
                            w.WriteString("reason", why);
                        }
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                if (report is { } found)
                {
                    var (kernelList, jitLogs, _) = found;
                    w.WriteStartArray("kernels");
                    foreach (var k in kernelList)
                    {
                        w.WriteStartObject();
                        w.WriteString("module", k.Module);
                        w.WriteString("kernel", k.Kernel);
                        w.WriteNumber("registers", k.Registers);
                        w.WriteNumber("local_bytes", k.LocalBytes);
                        w.WriteNumber("max_threads_per_block", k.MaxThreadsPerBlock);
                        w.WriteNumber("threads", k.Descriptor.Threads);
                        w.WriteNumber("rows_per_cta", k.Descriptor.RowsPerCta);
                        w.WriteNumber("stages", k.Descriptor.Stages);
                        w.WriteNumber("shared_memory_bytes", k.Descriptor.SharedMemoryBytes);
                        w.WriteNumber("shared_memory_bytes_per_request", k.Descriptor.SharedMemoryBytesPerRequest);
                        w.WriteString("param_struct", k.Descriptor.ParamStruct);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    w.WriteStartObject("jit_logs");
                    foreach (var (module, log) in jitLogs)
                    {
                        w.WriteString(module, log);
                    }
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }));
            return ExitCodes.Success;
        }

        var output = new Report();
        if (probe.Devices.Count == 0)
        {
            output.Note($"no CUDA device: {probe.Reason ?? "the driver reports no devices"}");
            if (probe.DriverLoaded)
            {
                output.Note($"driver version: {probe.DriverVersionText}");
            }
            if (probe.LoadTrace.Count > 0)
            {
                output.Note("driver library load trace:");
                foreach (var line in probe.LoadTrace)
                {
                    output.Note("  " + line);
                }
            }
            output.Note("The CPU backend is available: flashmla decode --backend cpu");
            output.Write(context, format);
            return ExitCodes.Success;
        }

        output.Note(
            $"CUDA driver {probe.DriverVersionText} ({probe.DriverVersion.ToString(CultureInfo.InvariantCulture)}) from {probe.LibraryName}, " +
            $"{probe.Devices.Count} device(s)");
        var table = output.Table(null, "#", "name", "compute capability", "SMs", "memory", "L2", "kernels");
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
        foreach (var d in probe.Devices)
        {
            if (d.Problem is { } problem)
            {
                output.Note($"device {d.Ordinal}: {problem}");
            }
        }

        var pathTable = output.Table(null, "#", "kernel path", "module", "target", "status");
        foreach (var d in probe.Devices)
        {
            foreach (var p in PathsOf(d))
            {
                pathTable.Row(
                    d.Ordinal.ToString(CultureInfo.InvariantCulture),
                    p.Path,
                    p.Module,
                    p.Target,
                    p.Reason ?? (report is not null && d.Ordinal == 0 ? "available" : "built for this target"));
            }
        }

        if (report is { } collected)
        {
            var (kernels, logs, _) = collected;
            var kernelTable = output.Table(
                null,
                "module", "kernel", "threads", "rows/CTA", "stages", "shared memory", "registers", "local (spill) bytes", "max threads/block");
            foreach (var k in kernels)
            {
                var d = k.Descriptor;
                kernelTable.Row(
                    k.Module,
                    k.Kernel,
                    KernelReport.Format(d.Threads),
                    d.RowsPerCta > 0 ? KernelReport.Format(d.RowsPerCta) : "-",
                    d.Stages > 0 ? KernelReport.Format(d.Stages) : "-",
                    KernelReport.Format(d.SharedMemoryBytes) + (d.SharedMemoryBytesPerRequest > 0 ? $" + {KernelReport.Format(d.SharedMemoryBytesPerRequest)}/request" : string.Empty),
                    KernelReport.Format(k.Registers),
                    KernelReport.Format(k.LocalBytes),
                    KernelReport.Format(k.MaxThreadsPerBlock));
            }

            foreach (var (module, log) in logs)
            {
                output.Block($"JIT log [{module}]", log);
            }
        }

        output.Write(context, format);
        return ExitCodes.Success;
    }
}
