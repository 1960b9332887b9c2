using System.CommandLine;
using FlashMla.Cli.Bench;
using FlashMla.Cli.Output;
using FlashMla.Tensors;

namespace FlashMla.Cli.Commands;

/// <summary>
/// <c>flashmla bench-append</c>: CUDA KV cache append timing, by the decode bench's graph-replay
/// method (<see cref="CudaBenchRunner.RunAppend"/>), with GB/s of bytes read + written as a share of
/// the same run's copy bandwidth.
/// </summary>
internal static class BenchAppendCommand
{
    public static Command Create(CliContext context)
    {
        var tokens = new Option<int[]>("--tokens", "-n")
        {
            Description = "Tokens per append, one case each",
            DefaultValueFactory = _ => [.. AppendBenchCase.DefaultTokens],
            AllowMultipleArgumentsPerToken = true,
            HelpName = "N",
        };
        tokens.Validators.Add(result =>
        {
            if (CliOptions.TryGetValue(result, tokens, out var values) && values is not null && values.Any(v => v < 1))
            {
                result.AddError($"--tokens must be >= 1; got {string.Join(" ", values)}");
            }
        });
        var kvHeads = CliOptions.Int("--kv-heads", "KV heads of the cache (h_kv)", 1, 1);
        var pageSize = CliOptions.Int("--page-size", "Tokens per cache page", 64, 1);
        var dtype = new Option<string>("--dtype")
        {
            Description = "Element type of the cache and the sources",
            DefaultValueFactory = _ => "bf16",
            HelpName = "bf16|fp16",
        };
        dtype.AcceptOnlyFromAmong("bf16", "fp16");
        var form = new Option<string>("--form")
        {
            Description = "latent: one [n, h_kv, 576] source; split: a [n, h_kv, 512] compressed KV and a [n, h_kv, 64] RoPE key",
            DefaultValueFactory = _ => "latent",
            HelpName = "latent|split",
        };
        form.AcceptOnlyFromAmong("latent", "split");
        var seed = CliOptions.Int("--seed", "Seed of the values and the slots", 0, 0);
        var iters = CliOptions.Int("--iters", "Timed appends of the per-call time (ms; the median is reported)", 100, 1);
        var warmup = CliOptions.Int("--warmup", "Warm-up appends of the per-call time", 10, 0);
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Also write the JSON records to this file (rewritten after every case)" };
        var format = CliOptions.Format();
        var command = new Command("bench-append",
            "Time CUDA KV cache appends (kv_cache_append): graph_us per append from one CUDA graph of K appends over R rotations " +
            "(median of 15 replays / K), ms per call with events; GB/s of bytes read + written, also as a share of a 1 GiB copy");
        command.Options.Add(tokens);
        command.Options.Add(kvHeads);
        command.Options.Add(pageSize);
        command.Options.Add(dtype);
        command.Options.Add(form);
        command.Options.Add(seed);
        command.Options.Add(iters);
        command.Options.Add(warmup);
        command.Options.Add(output);
        command.Options.Add(format);
        command.SetAction(parseResult => CliApp.Guard(context, () =>
        {
            _ = ElementTypes.TryParse(parseResult.GetValue(dtype), out var type);
            var split = parseResult.GetValue(form) == "split";
            var cases = (parseResult.GetValue(tokens) ?? [.. AppendBenchCase.DefaultTokens])
                .Select(n => new AppendBenchCase(n, parseResult.GetValue(kvHeads), parseResult.GetValue(pageSize), type, split, parseResult.GetValue(seed)))
                .ToArray();
            return Run(
                context,
                cases,
                new BenchSettings(parseResult.GetValue(iters), parseResult.GetValue(warmup), Graphs: true),
                parseResult.GetValue(output),
                CliOptions.GetFormat(parseResult, format));
        }));
        return command;
    }

    private static int Run(CliContext context, IReadOnlyList<AppendBenchCase> cases, BenchSettings settings, FileInfo? output, OutputFormat format)
    {
        if (output?.Directory is { Exists: false } directory)
        {
            throw new CliUsageException($"--output: the directory {directory.FullName} does not exist");
        }
        if (!CudaBenchRunner.TryCreate(out var runner, out var reason))
        {
            throw new CliFailureException($"bench-append runs on CUDA only, and the CUDA backend is not available here: {reason}");
        }

        using (runner)
        {
            var commit = CommitInfo.Get();
            var (run, nvml, readSmClock) = BenchCommand.StartRun(context, runner, commit, cases.Count, BenchRunInfo.AppendMethod);
            using (nvml)
            {
                context.Diag($"bench-append: {cases.Count} case(s) on {runner.GpuName} (CUDA {run.CudaDriverVersion}, SM clock {BenchCommand.Mhz(run.SmClockMhzStart)}), commit {commit}");
                context.Diag("measuring device-to-device copy bandwidth (1 GiB)...");
                run.CopyGBps = runner.MeasureCopyGBps();
                context.Diag($"copy: {TableOut.F(run.CopyGBps, 1)} GB/s (bytes read + written)");
                var records = new List<AppendBenchRecord>();
                var failures = 0;
                for (var i = 0; i < cases.Count; i++)
                {
                    var c = cases[i];
                    context.Diag($"[{i + 1}/{cases.Count}] {c.Name}");
                    try
                    {
                        var r = runner.RunAppend(c, settings, run.CopyGBps, commit, readSmClock, context.Diag);
                        records.Add(r);
                        context.Diag($"    graph {TableOut.F(r.GraphUs, 2)} us/append, {TableOut.F(r.Ms, 4)} ms per call, {TableOut.F(r.GBps, 0)} GB/s " +
                                     $"({(r.CopyPercent is { } p ? TableOut.F(p, 1) : "-")}% of copy)");
                    }
                    catch (Exception e) when (e is not OutOfMemoryException and not CliUsageException)
                    {
                        failures++;
                        context.Diag($"    error: {e.GetType().Name}: {e.Message}");
                    }
                    run.SmClockMhzEnd = readSmClock();
                    if (output is not null)
                    {
                        File.WriteAllText(output.FullName, Render(run, records));
                    }
                }

                BenchCommand.FinishRun(context, Render(run, records), records.Count, failures, cases.Count, output, format, () =>
                {
                    var report = new Report();
                    report.Note($"GPU: {run.Gpu}; CUDA {run.CudaDriverVersion}; SM clock {BenchCommand.Mhz(run.SmClockMhzStart)} -> {BenchCommand.Mhz(run.SmClockMhzEnd)}; D2D copy: {TableOut.F(run.CopyGBps, 1)} GB/s; commit {run.Commit}");
                    var table = report.Table(null, "case", "graph us", "ms", "GB/s", "% copy", "CTAs", "R", "K");
                    foreach (var r in records)
                    {
                        table.Row(
                            r.Case.Name,
                            TableOut.F(r.GraphUs, 2),
                            TableOut.F(r.Ms, 4),
                            TableOut.F(r.GBps, 0),
                            r.CopyPercent is { } p ? TableOut.F(p, 1) : "-",
                            r.Ctas.ToString(System.Globalization.CultureInfo.InvariantCulture),
                            r.Rotations.ToString(System.Globalization.CultureInfo.InvariantCulture),
                            r.CallsPerGraph.ToString(System.Globalization.CultureInfo.InvariantCulture));
                    }
                    return report;
                });
                return failures == 0 ? ExitCodes.Success : ExitCodes.Failure;
            }
        }
    }

    /// <summary>The JSON list: the run record first, then one record per case.</summary>
    internal static string Render(BenchRunInfo run, IReadOnlyList<AppendBenchRecord> records) => JsonOut.Render(w =>
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
