using System.Buffers.Binary;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using FlashMla.Cli;
using FlashMla.Cli.Bench;
using OxyPlot.Series;

namespace FlashMla.Tests.Cli.Bench;

/// <summary>The plots of bench --plot, drawn from recorded results (bench/results), without a GPU.</summary>
public sealed partial class BenchPlotTests
{
    private static readonly string Ours = Path.Combine(AppContext.BaseDirectory, "BenchResults", "h200.json");
    private static readonly string Anchor = Path.Combine(AppContext.BaseDirectory, "BenchResults", "h200-flashmla.json");

    private static (int ExitCode, string Out, string Err) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static string TempFile(string extension) =>
        Path.Combine(Path.GetTempPath(), $"flashmla-plot-{Environment.ProcessId}-{Guid.NewGuid():N}{extension}");

    /// <summary>The records of a recorded run, read independently of the plot code: (name, graph_us, tflops, flops, bytes).</summary>
    private static List<(string Name, double GraphUs, double Tflops, double Flops, double Bytes)> OursRecords()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Ours));
        return [.. document.RootElement.EnumerateArray()
            .Where(r => r.TryGetProperty("name", out _) && r.GetProperty("graph_us").ValueKind == JsonValueKind.Number)
            .Select(r => (r.GetProperty("name").GetString()!, r.GetProperty("graph_us").GetDouble(), r.GetProperty("tflops").GetDouble(),
                r.GetProperty("flops").GetDouble(), r.GetProperty("bytes").GetDouble()))];
    }

    [Fact]
    public void Recorded_results_are_read_with_their_gpu_copy_bandwidth_and_cases()
    {
        var run = BenchPlots.ReadResults(Ours, "--results");
        var expected = OursRecords();
        Assert.Equal("NVIDIA H200", run.Gpu);
        Assert.InRange(run.CopyGBps, 1000, 10000);
        Assert.Equal(expected.Select(e => e.Name), run.Cases.Select(c => c.Name));
        foreach (var (c, e) in run.Cases.Zip(expected))
        {
            // TFLOP/s recomputed from flops and graph_us agrees with the recorded field.
            Assert.Equal(e.Tflops, c.Tflops, 1e-6 * e.Tflops);
            Assert.Equal(e.Flops / e.Bytes, c.Intensity, 1e-9 * c.Intensity);
        }

        // The anchor's JSON lines: ceilings first, then one line per case with tflops and gbps (no flops field).
        var anchor = BenchPlots.ReadResults(Anchor, "--anchor");
        Assert.Equal("NVIDIA H200", anchor.Gpu);
        Assert.True(anchor.Cases.Count >= 70);
    }

    [Fact]
    public void Roofline_has_a_point_per_case_under_the_copy_and_peak_roofs()
    {
        var run = BenchPlots.ReadResults(Ours, "--results");
        var model = BenchPlots.Roofline(run);
        var points = model.Series.OfType<ScatterSeries>().SelectMany(s => s.Points).ToArray();
        Assert.Equal(run.Cases.Count, points.Length);
        var roofs = model.Series.OfType<LineSeries>().ToArray();
        Assert.Equal(2, roofs.Length);
        Assert.Equal(StatedPeaks.H200Bf16DenseTflops, roofs[1].Points[^1].Y);
        foreach (var p in points)
        {
            // No measured point is above the lower of the two roofs (the run's own copy bandwidth and the stated peak).
            var roof = Math.Min(run.CopyGBps * p.X / 1000, StatedPeaks.H200Bf16DenseTflops);
            Assert.True(p.Y <= roof * 1.02, $"{p.Tag}: {p.Y} TFLOP/s at {p.X} FLOP/byte is above the roof {roof}");
        }
    }

    [Fact]
    public void Side_by_side_pairs_cases_by_name_as_compare_py_does()
    {
        var ours = BenchPlots.ReadResults(Ours, "--results");
        var anchor = BenchPlots.ReadResults(Anchor, "--anchor");
        var pairs = BenchPlots.SpeedUps(ours, anchor);
        var theirs = anchor.Cases.ToDictionary(c => c.Name, c => c.GraphUs);
        var expected = OursRecords().Where(r => theirs.ContainsKey(r.Name)).ToArray();
        Assert.Equal(expected.Length, pairs.Count);
        foreach (var (pair, e) in pairs.Zip(expected))
        {
            Assert.Equal(e.Name, pair.Name);
            Assert.Equal(theirs[e.Name] / e.GraphUs, pair.SpeedUp, 1e-12);
        }
        var bars = BenchPlots.SideBySide(ours, anchor).Series.OfType<BarSeries>().Single();
        Assert.Equal(pairs.Select(p => p.SpeedUp), bars.Items.Select(i => i.Value));
    }

    [Fact]
    public void Bench_results_plot_writes_well_formed_svg_files()
    {
        var file = TempFile(".svg");
        var side = BenchPlots.SideBySidePath(file);
        try
        {
            var (code, output, error) = Run("bench", "--results", Ours, "--anchor", Anchor, "--plot", file);
            Assert.True(code == 0, error);
            Assert.Equal(string.Empty, output);
            Assert.Contains(file, error, StringComparison.Ordinal);
            Assert.Contains(side, error, StringComparison.Ordinal);

            var roofline = XDocument.Load(file);
            Assert.Equal("svg", roofline.Root!.Name.LocalName);
            var text = string.Concat(roofline.Descendants().Where(e => e.Name.LocalName == "text").Select(e => e.Value + "\n"));
            Assert.Contains("Roofline", text, StringComparison.Ordinal);
            Assert.Contains("arithmetic intensity (FLOP/byte)", text, StringComparison.Ordinal);
            Assert.Contains($"stated bf16 dense peak {StatedPeaks.H200Bf16DenseTflops:F0} TFLOP/s", text, StringComparison.Ordinal);

            var chart = XDocument.Load(side);
            Assert.Equal("svg", chart.Root!.Name.LocalName);
            var labels = string.Concat(chart.Descendants().Where(e => e.Name.LocalName == "text").Select(e => e.Value + "\n"));
            Assert.Contains("b128 s_q1 h16 s_k4096 fixed", labels, StringComparison.Ordinal);
            Assert.Contains("geomean", labels, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
            File.Delete(side);
        }
    }

    [Fact]
    public void Bench_results_plot_writes_a_png_of_the_stated_size()
    {
        if (!System.Runtime.InteropServices.NativeLibrary.TryLoad("libSkiaSharp", typeof(SkiaSharp.SKImage).Assembly, null, out _))
        {
            Assert.Skip("SkiaSharp's native library is not in this build (the GPU bundle leaves it out); PNG plots are tested where it is");
        }
        var file = TempFile(".png");
        try
        {
            var (code, _, error) = Run("bench", "--results", Ours, "--plot", file);
            Assert.True(code == 0, error);
            var bytes = File.ReadAllBytes(file);
            Assert.True(bytes.Length > 1000, $"{bytes.Length} bytes");
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A], bytes[..8]);
            Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(bytes, 12, 4));
            Assert.Equal(BenchPlots.Width, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)));
            Assert.Equal(BenchPlots.Height, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("out.pdf", "must end in .svg or .png")]
    [InlineData("/no/such/dir/out.svg", "does not exist")]
    public void A_bad_plot_path_is_a_usage_error_before_anything_runs(string path, string expected)
    {
        var (code, _, error) = Run("bench", "--plot", path);
        Assert.Equal(2, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Anchor_and_results_need_plot()
    {
        var (code, _, error) = Run("bench", "--anchor", Anchor);
        Assert.Equal(2, code);
        Assert.Contains("--plot", error, StringComparison.Ordinal);
    }

    [Fact]
    public void The_stated_peak_is_the_one_perf_notes_states()
    {
        string? notes = null;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "docs", "perf-notes.md");
            if (File.Exists(candidate) && File.Exists(Path.Combine(dir.FullName, "FlashMla.slnx")))
            {
                notes = File.ReadAllText(candidate);
                break;
            }
        }
        if (notes is null)
        {
            Assert.Skip("docs/perf-notes.md is not next to the test binaries (a bundle run)");
        }
        var row = notes.Split('\n').Single(l => l.StartsWith("| bf16 dense matrix rate (wgmma)", StringComparison.Ordinal));
        var stated = double.Parse(PeakPattern().Match(row).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(StatedPeaks.H200Bf16DenseTflops, stated);
    }

    [GeneratedRegex(@"about (\d+) TFLOP/s")]
    private static partial Regex PeakPattern();
}
