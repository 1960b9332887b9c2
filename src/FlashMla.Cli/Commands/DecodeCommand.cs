using System.CommandLine;
using System.Globalization;
using FlashMla.Cli.Backends;
using FlashMla.Cli.Output;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Cli.Commands;

/// <summary><c>flashmla decode</c>: one decode step on seeded random inputs.</summary>
internal static class DecodeCommand
{
    /// <summary>The defaults of the shape options.</summary>
    internal static DecodeCaseSpec Defaults { get; } = new() { Batch = 4, SeqlenK = 1024, QueryHeads = 128 };

    public static Command Create(CliContext context)
    {
        var shape = new ShapeOptions(Defaults);
        var backend = CliOptions.Backend("auto", "auto", "cpu", "cuda");
        var repeat = CliOptions.Int("--repeat", "Timed calls after the warm-up; the warm time is their median", DefaultRepeat, 1, max: CliOptions.MaxIterations);
        var warmup = CliOptions.Int("--warmup", "Untimed calls between the first (cold) call and the timed ones", DefaultWarmup, 0, max: CliOptions.MaxIterations);
        var format = CliOptions.Format();
        var command = new Command(
            "decode",
            "Run a decode step on seeded random inputs and print shapes, backend, kernel, the warm time (median of --repeat calls after --warmup), the cold time and checksums");
        shape.AddTo(command);
        command.Options.Add(backend);
        command.Options.Add(repeat);
        command.Options.Add(warmup);
        command.Options.Add(format);
        command.SetAction(parseResult => CliApp.Guard(context, () => Run(
            context,
            shape.Read(parseResult),
            parseResult.GetValue(backend) ?? "auto",
            new DecodeTiming(parseResult.GetValue(warmup), parseResult.GetValue(repeat)),
            CliOptions.GetFormat(parseResult, format))));
        return command;
    }

    /// <summary>The default of --repeat: timed calls.</summary>
    public const int DefaultRepeat = 5;

    /// <summary>The default of --warmup: untimed calls after the cold one.</summary>
    public const int DefaultWarmup = 1;

    private static int Run(CliContext context, DecodeCaseSpec spec, string backendChoice, DecodeTiming timing, OutputFormat format)
    {
        var lengths = CheckSize(spec);
        using var backend = BackendSelector.Select(backendChoice, context);
        if (backend.FreeDeviceBytes is { } free)
        {
            CaseBudget.CheckDecodeDevice(spec, lengths, ShapeNames.Options, Defaults, free);
        }
        context.Diag($"generating inputs: {spec.Describe()} seed={spec.Seed}");
        var inputs = Generate(spec);
        context.Diag($"decoding on {backend.Name} ({backend.Device})");
        var result = backend.Decode(inputs, timing);
        var kernel = backend.DescribeKernel(spec, inputs.MaxBlocksPerSequence);
        var kernelPath = kernel?.ToString() ?? backend.KernelPath;

        var absSum = result.AbsSum();
        var lseSum = result.FiniteLseSum();
        var nonFinite = result.NonFiniteOutputCount();
        var meanSeqLen = inputs.MeanSeqlen;

        if (format == OutputFormat.Json)
        {
            context.Out.Write(JsonOut.Render(w =>
            {
                w.WriteStartObject();
                w.WriteString("backend", backend.Name);
                w.WriteString("device", backend.Device);
                w.WriteString("kernel_path", kernelPath);
                if (kernel is not null)
                {
                    w.WriteStartObject("kernel");
                    w.WriteString("path", kernel.Path);
                    w.WriteString("entry", kernel.Entry);
                    w.WriteString("module", kernel.Kernel.Module);
                    w.WriteString("target", kernel.Target);
                    w.WriteNumber("rows_per_cta", kernel.RowsPerCta);
                    w.WriteNumber("threads", kernel.Threads);
                    w.WriteNumber("stages", kernel.Stages);
                    w.WriteNumber("shared_memory_bytes", kernel.SharedMemoryBytes);
                    w.WriteString("grid", kernel.Grid.ToString());
                    w.WriteEndObject();
                }
                w.WriteString("dtype", spec.ElementType.ShortName());
                w.WriteNumber("b", spec.Batch);
                w.WriteNumber("s_q", spec.QueryLength);
                w.WriteNumber("h_q", spec.QueryHeads);
                w.WriteNumber("h_kv", spec.KvHeads);
                w.WriteNumber("s_k", spec.SeqlenK);
                w.WriteBoolean("varlen", spec.Varlen);
                w.WriteBoolean("causal", spec.Causal);
                w.WriteNumber("page_block_size", spec.PageBlockSize);
                w.WriteNumber("seed", spec.Seed);
                w.Shape("q", inputs.QShape);
                w.Shape("k_cache", inputs.KShape);
                w.Shape("block_table", inputs.BlockTableShape);
                w.Shape("cache_seqlens", spec.Batch);
                w.Shape("out", inputs.OutputShape);
                w.Shape("lse", inputs.LseShape);
                w.Number("mean_seqlen", meanSeqLen);
                w.WriteNumber("min_seqlen", inputs.Seqlens.Min());
                w.WriteNumber("max_seqlen", inputs.Seqlens.Max());
                w.Number("ms", result.WarmMedianMs);
                w.Number("warm_ms_min", result.WarmMs.Min());
                w.Number("warm_ms_max", result.WarmMs.Max());
                w.Number("cold_ms", result.ColdMs);
                w.WriteNumber("repeat", timing.Repeat);
                w.WriteNumber("warmup", timing.Warmup);
                w.WriteString("timing", $"ms: median of {timing.Repeat} calls after a cold call and {timing.Warmup} warm-up call(s); cold_ms: the first call; {backend.TimingNote}");
                w.Number("out_abs_sum", absSum);
                w.Number("lse_finite_sum", lseSum);
                w.WriteNumber("out_non_finite", nonFinite);
                w.WriteEndObject();
            }));
        }
        else
        {
            var report = new Report();
            var table = report.Table(null, "item", "value");
            table.Row("backend", $"{backend.Name} ({backend.Device})");
            table.Row("kernel path", kernelPath);
            table.Row("dtype", spec.ElementType.ShortName());
            table.Row("q", TableOut.Shape(inputs.QShape));
            table.Row("k_cache", TableOut.Shape(inputs.KShape) + $" page {spec.PageBlockSize}");
            table.Row("block_table", TableOut.Shape(inputs.BlockTableShape));
            table.Row("cache_seqlens", $"[{spec.Batch}] min {inputs.Seqlens.Min()} mean {TableOut.F(meanSeqLen, 1)} max {inputs.Seqlens.Max()}" +
                (spec.Varlen ? " (varlen)" : ""));
            table.Row("causal", spec.Causal ? "yes" : "no");
            table.Row("out", TableOut.Shape(inputs.OutputShape));
            table.Row("lse", TableOut.Shape(inputs.LseShape));
            table.Row("time (warm)", $"{TableOut.F(result.WarmMedianMs, 3)} ms: median of {timing.Repeat} calls after {timing.Warmup} warm-up (min {TableOut.F(result.WarmMs.Min(), 3)}, max {TableOut.F(result.WarmMs.Max(), 3)}; {backend.TimingNote})");
            table.Row("time (cold)", $"{TableOut.F(result.ColdMs, 3)} ms: the first call");
            table.Row("Σ|out|", absSum.ToString("R", CultureInfo.InvariantCulture));
            table.Row("Σ lse (finite)", lseSum.ToString("R", CultureInfo.InvariantCulture));
            table.Row("non-finite out", nonFinite.ToString(CultureInfo.InvariantCulture));
            report.Write(context, format);
        }
        if (nonFinite != 0)
        {
            context.Diag($"error: the output holds {nonFinite} non-finite values");
            return ExitCodes.Failure;
        }
        return ExitCodes.Success;
    }

    /// <summary>
    /// Refuses a case too large for this process before anything of its size is allocated: first
    /// with s_k as the longest length, then, for variable lengths, with the drawn lengths (the
    /// draws of <see cref="DecodeCase.Create"/>, from the same seed).
    /// </summary>
    /// <returns>The drawn lengths of a varlen case (null for fixed lengths, which s_k gives).</returns>
    internal static int[]? CheckSize(DecodeCaseSpec spec)
    {
        CaseBudget.CheckDecode(spec, null, ShapeNames.Options, Defaults, CaseBudget.HostBudgetBytes);
        if (!spec.Varlen)
        {
            return null;
        }
        var lengths = RandomInputs.Lengths(spec, new Gaussian(spec.Seed));
        CaseBudget.CheckDecode(spec, lengths, ShapeNames.Options, Defaults, CaseBudget.HostBudgetBytes);
        return lengths;
    }

    /// <summary>The case's inputs (<see cref="CheckSize"/> has passed); a case the generator still refuses is a usage error.</summary>
    internal static DecodeCase Generate(DecodeCaseSpec spec)
    {
        try
        {
            return DecodeCase.Create(spec);
        }
        catch (NotSupportedException e)
        {
            throw new CliUsageException($"{e.Message}; use smaller --batch/--seqlen/--heads/--kv-heads");
        }
    }
}
