using System.CommandLine;
using System.Globalization;
using FlashMla.Cli.Bench;
using FlashMla.Cli.Inputs;
using FlashMla.Cli.Output;

namespace FlashMla.Cli.Commands;

/// <summary><c>flashmla bench</c>: CUDA decode timing with events and CUDA graphs.</summary>
internal static class BenchCommand
{
    public static Command Create(CliContext context)
    {
        var shape = new ShapeOptions(new DecodeCaseSpec { Batch = 128, SeqLenK = 4096, HeadsQ = 128, SeqQ = 1 });
        var suite = new Option<string>("--suite")
        {
            Description = "single: one case from the shape options; throughput: b 128, s_q {1,2}, h_q {16,32,64,128}, " +
                "s_k {4096,8192,16384}, fixed and varlen; latency: b {1,4,16,32}, s_q 1, h_q {16,128}, s_k {1024,4096,32768}",
            DefaultValueFactory = _ => "single",
            HelpName = string.Join('|', BenchSuites.Names),
        };
        suite.AcceptOnlyFromAmong(BenchSuites.Names);
        var iters = CliOptions.Int("--iters", "Timed iterations per case (the median is reported)", 100, 1);
        var warmup = CliOptions.Int("--warmup", "Warm-up iterations per case", 10, 0);
        var noGraph = new Option<bool>("--no-graph") { Description = "Skip the CUDA-graph replay timing" };
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Also write the JSON records to this file" };
        var format = CliOptions.Format();
        var command = new Command("bench", "Time CUDA decode (split kernel + combine) with CUDA events and graph replay; report ms, TFLOPS, GB/s");
        shape.AddTo(command);
        command.Options.Add(suite);
        command.Options.Add(iters);
        command.Options.Add(warmup);
        command.Options.Add(noGraph);
        command.Options.Add(output);
        command.Options.Add(format);
        command.SetAction(parseResult => CliApp.Guard(context, () => Run(
            context,
            shape.Read(parseResult),
            parseResult.GetValue(suite) ?? "single",
            new BenchSettings(parseResult.GetValue(iters), parseResult.GetValue(warmup), !parseResult.GetValue(noGraph)),
            parseResult.GetValue(output),
            CliOptions.GetFormat(parseResult, format))));
        return command;
    }

    private static int Run(CliContext context, DecodeCaseSpec template, string suite, BenchSettings settings, FileInfo? output, OutputFormat format)
    {
        if (settings.Iterations < 50)
        {
            context.Diag($"warning: --iters {settings.Iterations} is below 50; the medians will be noisy");
        }
        if (output?.Directory is { Exists: false } directory)
        {
            throw new CliUsageException($"--output: the directory {directory.FullName} does not exist");
        }
        var cases = BenchSuites.Cases(suite, template);
        if (!CudaBenchRunner.TryCreate(out var runner, out var reason))
        {
            throw new CliFailureException($"bench runs on CUDA only, and the CUDA backend is not available here: {reason}");
        }

        using (runner)
        {
            var commit = CommitInfo.Get();
            context.Diag($"bench: {cases.Count} case(s) on {runner.GpuName}, kernel path {runner.KernelPath}, commit {commit}");
            context.Diag("measuring device-to-device copy bandwidth (1 GiB)...");
            var copyGbps = runner.MeasureCopyGBps();
            context.Diag($"copy: {TableOut.F(copyGbps, 1)} GB/s (bytes read + written)");

            var records = new List<BenchRecord>();
            var failures = 0;
            for (var i = 0; i < cases.Count; i++)
            {
                var spec = cases[i];
                context.Diag($"[{i + 1}/{cases.Count}] {spec.Describe()}");
                try
                {
                    var record = runner.Run(spec, settings, copyGbps, commit, context.Diag);
                    records.Add(record);
                    if (output is not null)
                    {
                        // Rewritten after every case, so that an interrupted run keeps what it measured.
                        File.WriteAllText(output.FullName, RenderRecords(records));
                    }

                    context.Diag(
                        $"    {TableOut.F(record.Ms, 4)} ms (graph {(record.GraphMs is { } g ? TableOut.F(g, 4) : "-")} ms), " +
                        $"{TableOut.F(record.Tflops, 1)} TFLOPS, {TableOut.F(record.GBps, 0)} GB/s ({TableOut.F(record.CopyPercent, 1)}% of copy)");
                }
                catch (Exception e) when (e is not OutOfMemoryException and not CliUsageException)
                {
                    failures++;
                    context.Diag($"    error: {e.GetType().Name}: {e.Message}");
                }
            }

            var json = RenderRecords(records);
            if (output is not null)
            {
                File.WriteAllText(output.FullName, json);
                context.Diag($"wrote {records.Count} record(s) to {output.FullName}");
            }

            if (format == OutputFormat.Json)
            {
                context.Out.Write(json);
            }
            else
            {
                context.Out.WriteLine($"GPU: {runner.GpuName}; kernel path: {runner.KernelPath}; D2D copy: {TableOut.F(copyGbps, 1)} GB/s; commit {commit}");
                var table = TableOut.Create("b", "s_q", "h_q", "h_kv", "s_k", "varlen", "causal", "page", "dtype",
                    "ms", "graph ms", "plan ms", "TFLOPS", "GB/s", "% copy");
                foreach (var r in records)
                {
                    table.Row(
                        Str(r.Spec.Batch), Str(r.Spec.SeqQ), Str(r.Spec.HeadsQ), Str(r.Spec.HeadsKv), Str(r.Spec.SeqLenK),
                        r.Spec.Varlen ? "yes" : "no", r.Spec.Causal ? "yes" : "no", Str(r.Spec.PageSize), r.Spec.Dtype.ToName(),
                        TableOut.F(r.Ms, 4),
                        r.GraphMs is { } g ? TableOut.F(g, 4) : "-",
                        r.PlanMs is { } p ? TableOut.F(p, 4) : "-",
                        TableOut.F(r.Tflops, 1), TableOut.F(r.GBps, 0), TableOut.F(r.CopyPercent, 1));
                }
                context.OutConsole.Write(table);
            }
            return failures == 0 ? ExitCodes.Success : ExitCodes.Failure;
        }
    }

    private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string RenderRecords(List<BenchRecord> records) => JsonOut.Render(w =>
    {
        w.WriteStartArray();
        foreach (var r in records)
        {
            r.Write(w);
        }

        w.WriteEndArray();
    });
}
