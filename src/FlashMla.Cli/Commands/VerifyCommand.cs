using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FlashMla.Cli.Backends;
using FlashMla.Cli.Output;
using FlashMla.Tensors;
using FlashMla.Testing;
using Spectre.Console;

namespace FlashMla.Cli.Commands;

/// <summary><c>flashmla verify</c>: a backend against a float64 reference over a grid of cases.</summary>
internal static class VerifyCommand
{
    /// <summary>A tensor's comparison, under the tensor's name.</summary>
    private sealed record Named(string Name, CompareResult Result)
    {
        public bool Passed => Result.Passed;
    }

    private sealed record CaseResult(int Index, DecodeCaseSpec Spec, Named? Out, Named? Lse, string? Error, double Ms)
    {
        public bool Passed => Error is null && Out is { Passed: true } && Lse is { Passed: true };
    }

    public static Command Create(CliContext context)
    {
        var backend = CliOptions.Backend("auto", "auto", "cpu", "cuda");
        var quick = new Option<bool>("--quick") { Description = "A smaller grid" };
        var seed = new Option<int>("--seed") { Description = "Base random seed of the cases", DefaultValueFactory = _ => 0 };
        var format = CliOptions.Format();
        var command = new Command(
            "verify",
            "Compare a backend with a float64 reference over a built-in grid of cases, with FlashMLA's tolerances; exit 1 on any mismatch")
        {
            backend, quick, seed, format,
        };
        command.SetAction(parseResult => CliApp.Guard(context, () => Run(
            context,
            parseResult.GetValue(backend) ?? "auto",
            parseResult.GetValue(quick),
            parseResult.GetValue(seed),
            CliOptions.GetFormat(parseResult, format))));
        return command;
    }

    private static int Run(CliContext context, string backendChoice, bool quick, int seed, OutputFormat format)
    {
        using var backend = BackendSelector.Select(backendChoice, context);
        var cases = VerifyGrid.Cases(quick, seed);
        context.Diag($"verify: {cases.Count} cases on {backend.Name} ({backend.Device}), reference: float64 naive");

        var results = new List<CaseResult>(cases.Count);
        if (context.ErrorIsInteractive)
        {
            context.ErrorConsole.Progress()
                .AutoClear(true)
                .Start(progress =>
                {
                    var task = progress.AddTask("verifying", maxValue: cases.Count);
                    for (var i = 0; i < cases.Count; i++)
                    {
                        task.Description = $"case {i + 1}/{cases.Count}";
                        results.Add(RunCase(backend, i, cases[i]));
                        task.Increment(1);
                    }
                });
        }
        else
        {
            for (var i = 0; i < cases.Count; i++)
            {
                var result = RunCase(backend, i, cases[i]);
                results.Add(result);
                context.Diag($"[{i + 1}/{cases.Count}] {(result.Passed ? "ok  " : "FAIL")} {cases[i].Describe()}");
            }
        }

        var passed = results.Count(r => r.Passed);
        var failed = results.Count - passed;
        if (format == OutputFormat.Json)
        {
            context.Out.Write(JsonOut.Render(w =>
            {
                w.WriteStartObject();
                w.WriteString("backend", backend.Name);
                w.WriteString("device", backend.Device);
                w.WriteString("kernel_path", backend.KernelPath);
                w.WriteBoolean("quick", quick);
                w.WriteNumber("passed", passed);
                w.WriteNumber("failed", failed);
                w.WriteStartArray("cases");
                foreach (var r in results)
                {
                    WriteCase(w, r);
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }));
        }
        else
        {
            var report = new Report();
            var table = report.Table(null, "#", "case", "out max abs", "out max rel", "out cos diff", "lse max abs", "lse cos diff", "ms", "result");
            foreach (var r in results)
            {
                var cells = new[]
                {
                    (r.Index + 1).ToString(CultureInfo.InvariantCulture),
                    r.Spec.Describe(),
                    r.Out is { Result: var o } ? TableOut.E(o.MaxAbsError) : "-",
                    r.Out is { Result: var o2 } ? TableOut.E(o2.MaxRelError) : "-",
                    r.Out is { Result: var o3 } ? TableOut.E(o3.CosineDiff) : "-",
                    r.Lse is { Result: var l } ? TableOut.E(l.MaxAbsError) : "-",
                    r.Lse is { Result: var l2 } ? TableOut.E(l2.CosineDiff) : "-",
                    TableOut.F(r.Ms, 1),
                    r.Passed ? "PASS" : "FAIL: " + Why(r),
                };
                if (r.Passed)
                {
                    table.Row(cells);
                }
                else
                {
                    table.FlaggedRow(cells);
                }
            }
            report.Note($"verify {backend.Name}: {passed} passed, {failed} failed ({Tolerances(backend)})");
            report.Write(context, format);
        }
        return failed == 0 ? ExitCodes.Success : ExitCodes.Failure;
    }

    private static CaseResult RunCase(IDecodeBackend backend, int index, DecodeCaseSpec spec)
    {
        try
        {
            var inputs = DecodeCase.Create(spec);
            var stopwatch = Stopwatch.StartNew();
            var actual = backend.Decode(inputs, DecodeTiming.ColdOnly);
            stopwatch.Stop();
            var reference = NaiveMlaReference.Compute(inputs);
            var outCompare = new Named("out", Compare.Check(actual.Output, reference.Output, backend.OutputTolerance(spec.ElementType), inputs.OutputShape));
            var lseCompare = new Named("lse", Compare.Check(actual.Lse, reference.Lse, Tolerance.Lse, inputs.LseShape));
            return new CaseResult(index, spec, outCompare, lseCompare, null, stopwatch.Elapsed.TotalMilliseconds);
        }
        catch (Exception e) when (e is not OutOfMemoryException and not CliFailureException)
        {
            return new CaseResult(index, spec, null, null, $"{e.GetType().Name}: {e.Message}", 0);
        }
    }

    private static string Why(CaseResult r)
    {
        if (r.Error is { } error)
        {
            return error;
        }
        var reasons = new List<string>();
        foreach (var named in (Named?[])[r.Out, r.Lse])
        {
            if (named is not { Name: var name, Result: { Passed: false } c })
            {
                continue;
            }
            if (c.SpecialMismatches > 0)
            {
                reasons.Add($"{name}: {c.SpecialMismatches} inf/NaN mismatches");
            }
            if (c.ElementFailures > 0)
            {
                reasons.Add($"{name}: {c.ElementFailures} elements out of tolerance (first at {c.FirstBadIndex})");
            }
            if (!c.CosineDiffPasses)
            {
                reasons.Add($"{name}: cos diff {TableOut.E(c.CosineDiff)}");
            }
        }
        return string.Join("; ", reasons);
    }

    private static void WriteCase(System.Text.Json.Utf8JsonWriter w, CaseResult r)
    {
        w.WriteStartObject();
        w.WriteNumber("index", r.Index);
        w.WriteNumber("b", r.Spec.Batch);
        w.WriteNumber("s_q", r.Spec.QueryLength);
        w.WriteNumber("h_q", r.Spec.QueryHeads);
        w.WriteNumber("h_kv", r.Spec.KvHeads);
        w.WriteNumber("s_k", r.Spec.SeqlenK);
        w.WriteBoolean("varlen", r.Spec.Varlen);
        w.WriteBoolean("causal", r.Spec.Causal);
        w.WriteNumber("page_block_size", r.Spec.PageBlockSize);
        w.WriteString("dtype", r.Spec.ElementType.ShortName());
        w.WriteNumber("zero_length_requests", r.Spec.ZeroLengthRequests);
        w.WriteNumber("seed", r.Spec.Seed);
        w.WriteBoolean("passed", r.Passed);
        w.Number("ms", r.Ms);
        if (r.Error is { } error)
        {
            w.WriteString("error", error);
        }
        foreach (var named in (Named?[])[r.Out, r.Lse])
        {
            if (named is not { Name: var name, Result: var c })
            {
                continue;
            }
            w.WriteStartObject(name);
            w.WriteBoolean("passed", c.Passed);
            w.Number("max_abs_error", c.MaxAbsError);
            w.Number("max_rel_error", c.MaxRelError);
            w.Number("cos_diff", c.CosineDiff);
            w.WriteNumber("element_failures", c.ElementFailures);
            w.WriteNumber("special_mismatches", c.SpecialMismatches);
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    /// <summary>
    /// The bounds: "out: abs 8e-4 or rel 0.0157, cos 5e-6; lse: …", with the fp16 output bound
    /// after the bf16 one where the backend is held to another.
    /// </summary>
    private static string Tolerances(IDecodeBackend backend)
    {
        static string Bounds(Tolerance t, string absFormat, string relFormat) =>
            $"abs {t.Abs.ToString(absFormat, CultureInfo.InvariantCulture)} or rel {t.Rel.ToString(relFormat, CultureInfo.InvariantCulture)}, " +
            $"cos {t.Cos.ToString("0.#e+0", CultureInfo.InvariantCulture)}";
        var bf16 = backend.OutputTolerance(ElementType.BFloat16);
        var fp16 = backend.OutputTolerance(ElementType.Float16);
        var text = $"out: {Bounds(bf16, "0.####e+0", "0.#####")}; ";
        if (fp16 != bf16)
        {
            text += $"fp16 out: {Bounds(fp16, "0.####e+0", "0.#####")}; ";
        }
        return text + $"lse: {Bounds(Tolerance.Lse, "0.#e+0", "0.#######")}";
    }
}
