using System.Globalization;
using System.Text.Json;
using OxyPlot;
using OxyPlot.Annotations;
using OxyPlot.Axes;
using OxyPlot.Legends;
using OxyPlot.Series;

namespace FlashMla.Cli.Bench;

/// <summary>One timed case as a plot needs it: name, suite, FLOPs, bytes and graph_us.</summary>
internal sealed record PlotCase(string Name, string Suite, double Flops, double Bytes, double GraphUs)
{
    /// <summary>FLOP per byte (FlashMLA's formulas).</summary>
    public double Intensity => Flops / Bytes;

    /// <summary>TFLOP/s at <see cref="GraphUs"/>.</summary>
    public double Tflops => Flops / (GraphUs * 1e-6) / 1e12;

    public static PlotCase Of(BenchRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return new PlotCase(record.Case.Name, record.Case.Suite, record.Flops, record.Bytes, record.GraphUs ?? double.NaN);
    }
}

/// <summary>A bench run as a plot needs it: the GPU, the run's copy bandwidth and its timed cases.</summary>
internal sealed record PlotRun(string Gpu, double CopyGBps, IReadOnlyList<PlotCase> Cases);

/// <summary>
/// The bf16 dense tensor-core peaks the project states (docs/perf-notes.md, "Ceilings"), by GPU
/// name: the compute roof of the roofline. A GPU without a stated peak gets the memory roof alone.
/// </summary>
internal static class StatedPeaks
{
    /// <summary>The H200's bf16 dense matrix rate (wgmma) on random data: about 790 TFLOP/s.</summary>
    public const double H200Bf16DenseTflops = 790;

    /// <summary>The stated peak of a GPU, or null.</summary>
    public static double? Bf16DenseTflops(string gpu) =>
        gpu.Contains("H200", StringComparison.OrdinalIgnoreCase) ? H200Bf16DenseTflops : null;
}

/// <summary>
/// The plots of <c>flashmla bench --plot</c>: a roofline of a run and, given the FlashMLA anchor's
/// results, a side-by-side chart of the speed-up per case (anchor graph_us / ours, cases paired by
/// name as compare.py pairs them). They are built from plain records, so recorded results
/// (bench/results/*.json) draw the same plots as a live run.
/// </summary>
internal static class BenchPlots
{
    /// <summary>The image size, in pixels (PNG) or user units (SVG).</summary>
    public const int Width = 1200;
    public const int Height = 800;

    /// <summary>The extensions --plot accepts.</summary>
    public static readonly string[] Extensions = [".svg", ".png"];

    /// <summary>The roofline: each case at (FLOP/byte, TFLOP/s), one series per suite, under the copy-bandwidth and stated-peak roofs.</summary>
    public static PlotModel Roofline(PlotRun run)
    {
        ArgumentNullException.ThrowIfNull(run);
        var cases = run.Cases.Where(c => double.IsFinite(c.GraphUs) && c.GraphUs > 0 && c.Bytes > 0).ToArray();
        if (cases.Length == 0)
        {
            throw new CliFailureException("--plot: the run has no case with a graph_us to plot");
        }
        var peak = StatedPeaks.Bf16DenseTflops(run.Gpu);
        var model = new PlotModel
        {
            Title = $"Roofline: flashmla bench on {run.Gpu}",
            Subtitle = $"roofs: this run's copy bandwidth {F(run.CopyGBps, 0)} GB/s" +
                (peak is { } p ? $", stated bf16 dense peak {F(p, 0)} TFLOP/s" : $"; no bf16 peak is stated for {run.Gpu}"),
        };
        model.Legends.Add(new Legend { LegendPosition = LegendPosition.RightBottom, LegendPlacement = LegendPlacement.Inside });
        var xMin = Math.Pow(10, Math.Floor(Math.Log10(cases.Min(c => c.Intensity) / 2)));
        var xMax = Math.Pow(10, Math.Ceiling(Math.Log10(cases.Max(c => c.Intensity) * 2)));
        model.Axes.Add(new LogarithmicAxis { Position = AxisPosition.Bottom, Title = "arithmetic intensity (FLOP/byte)", Minimum = xMin, Maximum = xMax, MajorGridlineStyle = LineStyle.Dot });
        model.Axes.Add(new LogarithmicAxis { Position = AxisPosition.Left, Title = "TFLOP/s (from graph_us)", MajorGridlineStyle = LineStyle.Dot });

        // The memory roof, GB/s × FLOP/byte, up to the ridge (or the right edge).
        var ridge = peak is { } top && run.CopyGBps > 0 ? top * 1000 / run.CopyGBps : xMax;
        var memory = new LineSeries { Title = $"copy {F(run.CopyGBps, 0)} GB/s", Color = OxyColors.SteelBlue, StrokeThickness = 2 };
        memory.Points.Add(new DataPoint(xMin, run.CopyGBps * xMin / 1000));
        memory.Points.Add(new DataPoint(Math.Min(ridge, xMax), run.CopyGBps * Math.Min(ridge, xMax) / 1000));
        model.Series.Add(memory);
        if (peak is { } roof)
        {
            var compute = new LineSeries { Title = $"bf16 dense peak {F(roof, 0)} TFLOP/s", Color = OxyColors.Firebrick, StrokeThickness = 2 };
            compute.Points.Add(new DataPoint(Math.Min(ridge, xMax), roof));
            compute.Points.Add(new DataPoint(xMax, roof));
            model.Series.Add(compute);
        }

        OxyColor[] palette = [OxyColors.DarkOrange, OxyColors.SeaGreen, OxyColors.MediumPurple, OxyColors.Black];
        var suite = 0;
        foreach (var group in cases.GroupBy(c => c.Suite, StringComparer.Ordinal))
        {
            var series = new ScatterSeries
            {
                Title = $"{group.Key} ({group.Count()} cases)",
                MarkerType = MarkerType.Circle,
                MarkerSize = 4,
                MarkerFill = palette[suite++ % palette.Length],
            };
            foreach (var c in group)
            {
                series.Points.Add(new ScatterPoint(c.Intensity, c.Tflops) { Tag = c.Name });
            }
            model.Series.Add(series);
        }
        return model;
    }

    /// <summary>The cases of both runs, paired by name, in our order: (name, anchor graph_us / ours).</summary>
    public static IReadOnlyList<(string Name, double SpeedUp)> SpeedUps(PlotRun ours, PlotRun anchor)
    {
        ArgumentNullException.ThrowIfNull(ours);
        ArgumentNullException.ThrowIfNull(anchor);
        var theirs = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var c in anchor.Cases.Where(c => double.IsFinite(c.GraphUs) && c.GraphUs > 0))
        {
            theirs.TryAdd(c.Name, c.GraphUs);
        }
        return [.. ours.Cases
            .Where(c => double.IsFinite(c.GraphUs) && c.GraphUs > 0 && theirs.ContainsKey(c.Name))
            .Select(c => (c.Name, theirs[c.Name] / c.GraphUs))];
    }

    /// <summary>The side-by-side chart: one bar per paired case, the speed-up (anchor graph_us / ours), a line at 1 and the geomean.</summary>
    public static PlotModel SideBySide(PlotRun ours, PlotRun anchor)
    {
        var pairs = SpeedUps(ours, anchor);
        if (pairs.Count == 0)
        {
            throw new CliUsageException("--anchor: no case of the anchor's results has the name of a case of this run; cases are paired by name");
        }
        var geomean = Math.Exp(pairs.Average(p => Math.Log(p.SpeedUp)));
        var model = new PlotModel
        {
            Title = $"Side by side with FlashMLA on {ours.Gpu}: speed-up per case (FlashMLA graph_us / ours)",
            Subtitle = $"{pairs.Count} cases paired by name; geomean {F(geomean, 3)}x, min {F(pairs.Min(p => p.SpeedUp), 3)}x, max {F(pairs.Max(p => p.SpeedUp), 3)}x",
        };
        var categories = new CategoryAxis { Position = AxisPosition.Left, IsZoomEnabled = false, StartPosition = 1, EndPosition = 0, FontSize = 9 };
        var bars = new BarSeries { FillColor = OxyColors.SteelBlue, LabelFormatString = "{0:0.00}", FontSize = 8 };
        foreach (var (name, speedUp) in pairs)
        {
            categories.Labels.Add(name);
            bars.Items.Add(new BarItem(speedUp) { Color = speedUp >= 1 ? OxyColors.SeaGreen : OxyColors.IndianRed });
        }
        model.Axes.Add(categories);
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Bottom, Title = "speed-up (x)", Minimum = 0, MaximumPadding = 0.06, MajorGridlineStyle = LineStyle.Dot });
        model.Series.Add(bars);
        model.Annotations.Add(new LineAnnotation { Type = LineAnnotationType.Vertical, X = 1, Color = OxyColors.Black, StrokeThickness = 1.5, Text = "1x" });
        model.Annotations.Add(new LineAnnotation { Type = LineAnnotationType.Vertical, X = geomean, Color = OxyColors.DarkOrange, LineStyle = LineStyle.Dash, Text = $"geomean {F(geomean, 2)}x" });
        return model;
    }

    /// <summary>The height that gives every bar of a side-by-side chart room for its label.</summary>
    public static int SideBySideHeight(int cases) => Math.Max(Height, 120 + (cases * 16));

    /// <summary>Where the side-by-side chart goes: beside the roofline's file, "NAME.side-by-side.EXT".</summary>
    public static string SideBySidePath(string rooflinePath) =>
        Path.Combine(Path.GetDirectoryName(rooflinePath) ?? "", Path.GetFileNameWithoutExtension(rooflinePath) + ".side-by-side" + Path.GetExtension(rooflinePath));

    /// <summary>Checks a --plot path before the run: a known extension and an existing directory.</summary>
    public static void CheckPath(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var extension = Path.GetExtension(path).ToLowerInvariant();
        if (!Extensions.Contains(extension))
        {
            throw new CliUsageException($"--plot {path}: the file must end in {string.Join(" or ", Extensions)} (got \"{extension}\")");
        }
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null && !Directory.Exists(directory))
        {
            throw new CliUsageException($"--plot {path}: the directory {directory} does not exist");
        }
    }

    /// <summary>Writes a plot as SVG or PNG, by the file's extension.</summary>
    public static void Save(PlotModel model, string path, int width = Width, int height = Height)
    {
        ArgumentNullException.ThrowIfNull(model);
        CheckPath(path);
        if (Path.GetExtension(path).Equals(".svg", StringComparison.OrdinalIgnoreCase))
        {
            using var stream = File.Create(path);
            new SvgExporter { Width = width, Height = height }.Export(model, stream);
            return;
        }
        try
        {
            using var stream = File.Create(path);
            new OxyPlot.SkiaSharp.PngExporter { Width = width, Height = height }.Export(model, stream);
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or BadImageFormatException or EntryPointNotFoundException)
        {
            File.Delete(path);
            throw new CliFailureException(
                $"--plot {path}: PNG is drawn with SkiaSharp, whose native library could not be loaded here " +
                $"({System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier}; builds carry it for linux-x64 and win-x64, the GPU bundle for none): " +
                $"{e.GetBaseException().Message.Split('\n')[0]}. Write an .svg instead, which needs no native library");
        }
    }

    /// <summary>
    /// Reads recorded bench results: a JSON list (ours, as --output writes it) or JSON lines (the
    /// FlashMLA anchor's), as scripts/bench-report.py does. The run's GPU and copy bandwidth come
    /// from its first record (our "run" record or the anchor's "ceilings" line); the cases are the
    /// records with a name and a graph_us.
    /// </summary>
    public static PlotRun ReadResults(string path, string option)
    {
        ArgumentNullException.ThrowIfNull(path);
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new CliUsageException($"{option} {path}: cannot read the file: {e.Message}");
        }
        var records = new List<JsonElement>();
        try
        {
            using var document = JsonDocument.Parse(text);
            if (document.RootElement.ValueKind == JsonValueKind.Array)
            {
                records.AddRange(document.RootElement.EnumerateArray().Select(e => e.Clone()));
            }
            else
            {
                records.Add(document.RootElement.Clone());
            }
        }
        catch (JsonException)
        {
            foreach (var line in text.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                if (!line.StartsWith('{'))
                {
                    continue;
                }
                try
                {
                    using var document = JsonDocument.Parse(line);
                    records.Add(document.RootElement.Clone());
                }
                catch (JsonException)
                {
                    // A line cut short by an interrupted run.
                }
            }
        }

        var objects = records.Where(r => r.ValueKind == JsonValueKind.Object).ToArray();
        var head = objects.FirstOrDefault(r => Str(r, "kind") is "run" or "ceilings");
        var gpu = head.ValueKind == JsonValueKind.Object ? Str(head, "gpu") : null;
        var copy = head.ValueKind == JsonValueKind.Object ? Num(head, "copy_gbps") : null;
        var cases = new List<PlotCase>();
        foreach (var r in objects)
        {
            if (Str(r, "name") is not { } name || Num(r, "graph_us") is not { } graphUs)
            {
                continue;
            }
            var flops = Num(r, "flops") ?? Num(r, "tflops") * 1e12 * graphUs * 1e-6;
            var bytes = Num(r, "bytes") ?? Num(r, "gbps") * 1e9 * graphUs * 1e-6;
            if (flops is not { } f || bytes is not { } b)
            {
                throw new CliUsageException($"{option} {path}: case \"{name}\" has neither flops and bytes nor tflops and gbps");
            }
            cases.Add(new PlotCase(name, Str(r, "suite") ?? Str(r, "impl") ?? "cases", f, b, graphUs));
        }
        if (cases.Count == 0)
        {
            throw new CliUsageException($"{option} {path}: no record with a name and a graph_us (expected flashmla bench JSON or the anchor's JSON lines)");
        }
        return new PlotRun(gpu ?? "an unnamed GPU", copy ?? double.NaN, cases);
    }

    private static string? Str(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static double? Num(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

    private static string F(double value, int decimals) => value.ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
}
