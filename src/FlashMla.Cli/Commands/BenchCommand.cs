using System.CommandLine;
using System.Globalization;
using FlashMla.Cli.Bench;
using FlashMla.Cli.Nvml;
using FlashMla.Cli.Output;
using FlashMla.Testing;

namespace FlashMla.Cli.Commands;

/// <summary>
/// <c>flashmla bench</c>: CUDA decode timing. <c>graph_us</c> follows the method of the FlashMLA
/// figures (<see cref="BenchMethod"/>); <c>ms</c> is the per-call event timing.
/// </summary>
internal static class BenchCommand
{
    public static Command Create(CliContext context)
    {
        var shape = new ShapeOptions(BenchSuites.Defaults);
        var suite = new Option<string[]>("--suite")
        {
            Description = "Built-in cases, one or more suites: single: one case from the shape options; throughput: b 128, s_q {1,2}, " +
                "h_q {16,32,64,128}, s_k {4096,8192,16384}, fixed and varlen; latency: b {1,4,16,32}, s_q 1, h_q {16,128}, " +
                "s_k {1024,4096,32768}, and the MTP case b 64, s_q 4, h_q 128, s_k 4096, causal",
            DefaultValueFactory = _ => ["single"],
            HelpName = string.Join('|', BenchSuites.Names),
            AllowMultipleArgumentsPerToken = true,
        };
        suite.AcceptOnlyFromAmong(BenchSuites.Names);
        var cases = new Option<FileInfo[]>("--cases")
        {
            Description = "Cases files in the shared format (a JSON list of {name, b, s_q, h_q, h_kv, s_k, varlen, causal, " +
                "page_block_size, dtype, seqlens}); the cases run in order, with the files' lengths. Not with --suite",
            HelpName = "FILE",
            AllowMultipleArgumentsPerToken = true,
        };
        var iters = CliOptions.Int("--iters", "Timed iterations per case of the per-call time (ms) and the plan (the median is reported)", 100, 1, max: CliOptions.MaxIterations);
        var warmup = CliOptions.Int("--warmup", "Warm-up iterations per case of the per-call time and the plan", 10, 0, max: CliOptions.MaxIterations);
        var noGraph = new Option<bool>("--no-graph") { Description = "Skip graph_us (the CUDA-graph figure of the shared method)" };
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Also write the JSON records to this file (rewritten after every case)" };
        var plot = new Option<FileInfo?>("--plot")
        {
            Description = "Draw a roofline of the run (FLOP/byte against TFLOP/s under the run's copy bandwidth and the stated bf16 dense peak) " +
                "to FILE.svg or FILE.png; with --anchor, also the speed-up per case beside it, in FILE.side-by-side.svg|png",
            HelpName = "FILE.svg|FILE.png",
        };
        var anchor = new Option<FileInfo?>("--anchor")
        {
            Description = "The FlashMLA anchor's results (JSON lines, as bench/results/h200-flashmla.json) to pair with this run's cases by name for --plot",
            HelpName = "FILE",
        };
        var results = new Option<FileInfo?>("--results")
        {
            Description = "Plot recorded results (a flashmla bench JSON file, as bench/results/h200.json) instead of running; needs --plot, runs without a GPU",
            HelpName = "FILE",
        };
        var format = CliOptions.Format();
        var command = new Command("bench",
            "Time CUDA decode (split kernel + combine): graph_us by the method of the FlashMLA figures (one CUDA graph of K calls " +
            "over R rotations of the KV cache, median of 15 replays / K), and ms per call with events; TFLOPS, GB/s, a 1 GiB copy baseline");
        shape.AddTo(command);
        command.Options.Add(suite);
        command.Options.Add(cases);
        command.Options.Add(iters);
        command.Options.Add(warmup);
        command.Options.Add(noGraph);
        command.Options.Add(output);
        command.Options.Add(plot);
        command.Options.Add(anchor);
        command.Options.Add(results);
        command.Options.Add(format);
        command.Validators.Add(result =>
        {
            if (result.GetResult(cases) is { Tokens.Count: > 0 } && result.GetResult(suite) is { Implicit: false })
            {
                result.AddError("--cases and --suite cannot be combined: give the cases files, or the built-in suites");
            }
        });
        command.Validators.Add(result =>
        {
            if (result.GetResult(plot) is null && (result.GetResult(anchor) is not null || result.GetResult(results) is not null))
            {
                result.AddError("--anchor and --results are for plots: give --plot FILE.svg|FILE.png too");
            }
        });
        command.SetAction(parseResult => CliApp.Guard(context, () =>
        {
            var plots = PlotRequest.Read(parseResult.GetValue(plot), parseResult.GetValue(anchor));
            if (parseResult.GetValue(results) is { } recorded)
            {
                plots!.Draw(context, BenchPlots.ReadResults(recorded.FullName, "--results"));
                return ExitCodes.Success;
            }
            var template = shape.Read(parseResult);
            var files = parseResult.GetValue(cases) ?? [];
            var benchCases = files.Length > 0
                ? LoadCases(files, template.Seed)
                : LoadSuites(parseResult.GetValue(suite) ?? ["single"], template);
            return Run(
                context,
                benchCases,
                new BenchSettings(parseResult.GetValue(iters), parseResult.GetValue(warmup), !parseResult.GetValue(noGraph)),
                parseResult.GetValue(output),
                plots,
                CliOptions.GetFormat(parseResult, format));
        }));
        return command;
    }

    /// <summary>The cases of all files, in order; a name may appear once in the whole run.</summary>
    internal static IReadOnlyList<BenchCase> LoadCases(IReadOnlyList<FileInfo> files, int seed)
    {
        var all = new List<BenchCase>();
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in files)
        {
            foreach (var c in BenchCasesFile.Load(file.FullName, seed))
            {
                if (!seen.TryAdd(c.Name, file.Name))
                {
                    throw new CliUsageException($"--cases: the case name \"{c.Name}\" is in both {seen[c.Name]} and {file.Name}; results are matched by name");
                }
                all.Add(c);
            }
        }
        return all;
    }

    internal static IReadOnlyList<BenchCase> LoadSuites(IReadOnlyList<string> suites, DecodeCaseSpec template)
    {
        var duplicate = suites.GroupBy(s => s, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new CliUsageException($"--suite {duplicate.Key} is given twice");
        }
        return [.. suites.SelectMany(s => BenchSuites.Cases(s, template))];
    }

    /// <summary>What --plot and --anchor ask for, checked before anything runs: the file, and the anchor's results already read.</summary>
    internal sealed record PlotRequest(string Path, PlotRun? Anchor)
    {
        public static PlotRequest? Read(FileInfo? plot, FileInfo? anchor)
        {
            if (plot is null)
            {
                return null;
            }
            BenchPlots.CheckPath(plot.FullName);
            return new PlotRequest(plot.FullName, anchor is null ? null : BenchPlots.ReadResults(anchor.FullName, "--anchor"));
        }

        /// <summary>Writes the roofline and, with an anchor, the side-by-side chart; says where on standard error.</summary>
        public void Draw(CliContext context, PlotRun run)
        {
            ArgumentNullException.ThrowIfNull(context);
            ArgumentNullException.ThrowIfNull(run);
            BenchPlots.Save(BenchPlots.Roofline(run), Path);
            context.Diag($"wrote the roofline of {run.Cases.Count} case(s) to {Path}");
            if (Anchor is { } anchor)
            {
                var sidePath = BenchPlots.SideBySidePath(Path);
                var pairs = BenchPlots.SpeedUps(run, anchor).Count;
                BenchPlots.Save(BenchPlots.SideBySide(run, anchor), sidePath, BenchPlots.Width, BenchPlots.SideBySideHeight(pairs));
                context.Diag($"wrote the speed-up of {pairs} case(s) paired with the anchor to {sidePath}");
            }
        }
    }

    private static int Run(CliContext context, IReadOnlyList<BenchCase> cases, BenchSettings settings, FileInfo? output, PlotRequest? plots, OutputFormat format)
    {
        if (settings.Iterations < 50)
        {
            context.Diag($"warning: --iters {settings.Iterations} is below 50; the medians of ms and plan_ms will be noisy");
        }
        if (output?.Directory is { Exists: false } directory)
        {
            throw new CliUsageException($"--output: the directory {directory.FullName} does not exist");
        }
        if (!CudaBenchRunner.TryCreate(out var runner, out var reason))
        {
            throw new CliFailureException($"bench runs on CUDA only, and the CUDA backend is not available here: {reason}");
        }

        using (runner)
        {
            // Every case must fit the device before anything is timed.
            var free = runner.FreeMemoryBytes;
            foreach (var benchCase in cases)
            {
                CaseBudget.CheckBenchDevice(benchCase.Spec, benchCase.SeqLens, benchCase.Names, BenchSuites.Defaults, free);
            }

            var commit = CommitInfo.Get();
            var (run, nvml, readSmClock) = StartRun(context, runner, commit, cases.Count, BenchRunInfo.Method);
            using (nvml)
            {
                context.Diag($"bench: {cases.Count} case(s) on {runner.GpuName} (driver {run.DriverVersion ?? "?"}, CUDA {run.CudaDriverVersion}, " +
                             $"SM clock {Mhz(run.SmClockMhzStart)} of max {Mhz(run.SmClockMaxMhz)}), kernel path {runner.KernelPath}, commit {commit}");
                context.Diag("measuring device-to-device copy bandwidth (1 GiB)...");
                run.CopyGBps = runner.MeasureCopyGBps();
                context.Diag($"copy: {TableOut.F(run.CopyGBps, 1)} GB/s (bytes read + written)");

                var records = new List<BenchRecord>();
                var failures = 0;
                for (var i = 0; i < cases.Count; i++)
                {
                    var benchCase = cases[i];
                    context.Diag($"[{i + 1}/{cases.Count}] {benchCase.Name} ({benchCase.Suite}: {benchCase.Spec.Describe()})");
                    try
                    {
                        var record = runner.Run(benchCase, settings, run.CopyGBps, commit, readSmClock, context.Diag);
                        records.Add(record);
                        context.Diag(
                            $"    graph {(record.GraphUs is { } g ? TableOut.F(g, 2) : "-")} us/call (R {record.Rotations}, K {record.CallsPerGraph}), " +
                            $"{TableOut.F(record.Ms, 4)} ms per call, {(record.Tflops is { } t ? TableOut.F(t, 1) : "-")} TFLOPS, " +
                            $"{(record.GBps is { } b ? TableOut.F(b, 0) : "-")} GB/s ({(record.CopyPercent is { } p ? TableOut.F(p, 1) : "-")}% of copy), " +
                            $"SM {Mhz(record.SmClockMhz)}");
                    }
                    catch (Exception e) when (e is not OutOfMemoryException and not CliUsageException)
                    {
                        failures++;
                        context.Diag($"    error: {e.GetType().Name}: {e.Message}");
                    }
                    run.SmClockMhzEnd = readSmClock();
                    if (output is not null)
                    {
                        // Rewritten after every case, so that an interrupted run keeps what it measured.
                        File.WriteAllText(output.FullName, RenderRecords(run, records));
                    }
                }

                FinishRun(context, RenderRecords(run, records), records.Count, failures, cases.Count, output, format,
                          () => TableReport(run, runner.KernelPath, records));

                // After the results are out, so that a plot that cannot be written loses none of them.
                if (plots is not null && records.Count > 0)
                {
                    plots.Draw(context, new PlotRun(run.Gpu, run.CopyGBps, [.. records.Select(PlotCase.Of)]));
                }
                return failures == 0 ? ExitCodes.Success : ExitCodes.Failure;
            }
        }
    }

    /// <summary>
    /// Opens NVML on the runner's device (null with the reason on standard error when it cannot)
    /// and fills the run record: the machine, the driver, the clocks at the start.
    /// </summary>
    internal static (BenchRunInfo Run, NvmlDevice? Nvml, Func<int?> ReadSmClock) StartRun(CliContext context, CudaBenchRunner runner, string commit, int cases, string method)
    {
        var device = runner.Device;
        NvmlDevice? nvml = null;
        string? clockNote = null;
        if (NvmlDevice.TryOpen(device.PciLocation, device.Ordinal, out var opened, out var nvmlReason))
        {
            nvml = opened;
            clockNote = nvmlReason.Length > 0 ? nvmlReason : null;
            if (clockNote is not null)
            {
                context.Diag($"warning: NVML: {clockNote}");
            }
        }
        else
        {
            clockNote = $"NVML unavailable: {nvmlReason}";
            context.Diag($"warning: the SM clock and the driver version are not recorded (null in the JSON): {clockNote}");
        }

        int? ReadSmClock()
        {
            if (nvml is null)
            {
                return null;
            }
            var mhz = nvml.SmClockMhz();
            if (mhz is null && nvml.LastError is { } error)
            {
                context.Diag($"warning: SM clock not read: {error}");
            }
            return mhz;
        }

        var run = new BenchRunInfo
        {
            Gpu = runner.GpuName,
            PciBusId = device.PciLocation,
            ComputeCapability = device.ComputeCapability.ToString(),
            Multiprocessors = device.MultiprocessorCount,
            L2Bytes = device.L2CacheSizeBytes,
            CudaDriverVersion = device.Driver.VersionString,
            Commit = commit,
            StartedUtc = DateTimeOffset.UtcNow,
            DriverVersion = nvml?.DriverVersion,
            SmClockMhzStart = ReadSmClock(),
            SmClockMaxMhz = nvml?.MaxSmClockMhz(),
            MemClockMhz = nvml?.MemoryClockMhz(),
            ClockNote = clockNote,
            Cases = cases,
            MethodText = method,
        };
        return (run, nvml, ReadSmClock);
    }

    /// <summary>The run as a note and a table of its cases (the table, Markdown and CSV formats).</summary>
    internal static Report TableReport(BenchRunInfo run, string kernelPath, IReadOnlyList<BenchRecord> records)
    {
        var report = new Report();
        report.Note(
            $"GPU: {run.Gpu}; driver {run.DriverVersion ?? "?"} (CUDA {run.CudaDriverVersion}); SM clock {Mhz(run.SmClockMhzStart)} -> {Mhz(run.SmClockMhzEnd)}; " +
            $"kernel path: {kernelPath}; D2D copy: {TableOut.F(run.CopyGBps, 1)} GB/s; commit {run.Commit}");
        var table = report.Table(null, "case", "graph us", "ms", "plan ms", "TFLOPS", "GB/s", "% copy", "R", "K", "SM clock");
        foreach (var r in records)
        {
            table.Row(
                r.Case.Name,
                r.GraphUs is { } g ? TableOut.F(g, 2) : "-",
                TableOut.F(r.Ms, 4),
                r.PlanMs is { } p ? TableOut.F(p, 4) : "-",
                r.Tflops is { } t ? TableOut.F(t, 1) : "-",
                r.GBps is { } b ? TableOut.F(b, 0) : "-",
                r.CopyPercent is { } c ? TableOut.F(c, 1) : "-",
                Str(r.Rotations),
                Str(r.CallsPerGraph),
                Mhz(r.SmClockMhz));
        }
        return report;
    }

    /// <summary>
    /// The end of a bench run (decode or append): writes the JSON list to <paramref name="output"/>,
    /// says how many cases failed, and prints the JSON or the report in <paramref name="format"/>.
    /// </summary>
    internal static void FinishRun(CliContext context, string json, int records, int failures, int cases, FileInfo? output, OutputFormat format, Func<Report> report)
    {
        if (output is not null)
        {
            File.WriteAllText(output.FullName, json);
            context.Diag($"wrote the run record and {records} case record(s) to {output.FullName}");
        }
        if (failures > 0)
        {
            context.Diag($"error: {failures} of {cases} case(s) failed");
        }

        if (format == OutputFormat.Json)
        {
            context.Out.Write(json);
        }
        else
        {
            report().Write(context, format);
        }
    }

    internal static string Mhz(int? mhz) => mhz is { } m ? Str(m) + " MHz" : "?";

    private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>The JSON list: the run record first, then one record per case.</summary>
    internal static string RenderRecords(BenchRunInfo run, IReadOnlyList<BenchRecord> records) => JsonOut.Render(w =>
    {
        w.WriteStartArray();
        run.Write(w);
        foreach (var r in records)
        {
            r.Write(w);
        }
        w.WriteEndArray();
    });
}
