using System.Text.Json;
using FlashMla.Cli;
using FlashMla.Cli.Backends;

namespace FlashMla.Tests.Cli;

public class CliTests
{
    private static (int ExitCode, string Out, string Err) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Theory]
    [InlineData("decode", "--batch", "0")]
    [InlineData("decode", "--dtype", "fp32")]
    [InlineData("decode", "--heads", "3", "--kv-heads", "2")]
    [InlineData("decode", "--batch", "x")]
    [InlineData("verify", "--backend", "gpu")]
    [InlineData("bench", "--suite", "nope")]
    [InlineData("info", "--format", "xml")]
    [InlineData("no-such-command")]
    [InlineData]
    public void Usage_errors_exit_with_2_and_say_what_is_wrong(params string[] args)
    {
        var (code, output, error) = Run(args);
        Assert.Equal(2, code);
        Assert.Contains("error:", error, StringComparison.Ordinal);
        Assert.Equal(string.Empty, output);
    }

    [Fact]
    public void Help_exits_0()
    {
        var (code, output, _) = Run("decode", "--help");
        Assert.Equal(0, code);
        Assert.Contains("--kv-heads", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_on_cpu_prints_json_with_shapes_and_checksums()
    {
        var (code, output, error) = Run(
            "decode", "--backend", "cpu", "--batch", "2", "--seqlen", "100", "--heads", "16", "--sq", "2",
            "--causal", "--varlen", "--page-size", "32", "--format", "json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var root = json.RootElement;
        Assert.Equal("cpu", root.GetProperty("backend").GetString());
        Assert.Equal([2, 2, 16, 512], root.GetProperty("out").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal([2, 16, 2], root.GetProperty("lse").EnumerateArray().Select(e => e.GetInt32()));
        Assert.True(root.GetProperty("out_abs_sum").GetDouble() > 0);
        Assert.Equal(0, root.GetProperty("out_non_finite").GetInt32());
    }

    [Fact]
    public void Decode_on_cpu_prints_a_table()
    {
        var (code, output, error) = Run("decode", "--backend", "cpu", "--batch", "1", "--seqlen", "64", "--heads", "16");
        Assert.True(code == 0, error);
        Assert.Contains("k_cache", output, StringComparison.Ordinal);
        Assert.Contains("[1, 1, 16, 512]", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Info_exits_0_and_names_the_reason_when_there_is_no_device()
    {
        var (code, output, _) = Run("info");
        Assert.Equal(0, code);
        if (CudaProbe.Probe().Devices.Count == 0)
        {
            Assert.Contains("no CUDA device", output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Bench_without_cuda_fails_plainly()
    {
        if (CudaProbe.Probe().Devices.Count > 0)
        {
            Assert.Skip("a CUDA device is present");
        }
        var (code, _, error) = Run("bench", "--batch", "1", "--seqlen", "64");
        Assert.Equal(1, code);
        Assert.Contains("CUDA", error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", error, StringComparison.Ordinal);
    }
}

public class CliGpuTests
{
    private static (int ExitCode, string Out, string Err) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static void RequireCuda()
    {
        if (!CudaSession.TryOpen(out var session, out var reason))
        {
            SkipReasons.SkipNoCudaDevice(reason);
        }
        session.Dispose();
    }

    [Fact]
    public void Verify_quick_on_cuda_passes()
    {
        RequireCuda();
        var (code, output, error) = Run("verify", "--backend", "cuda", "--quick", "--format", "json");
        Assert.True(code == 0, output + error);
        using var json = JsonDocument.Parse(output);
        Assert.Equal(0, json.RootElement.GetProperty("failed").GetInt32());
    }

    [Fact]
    public void Decode_on_cuda_matches_cpu_checksums()
    {
        RequireCuda();
        string[] shape = ["--batch", "3", "--seqlen", "300", "--varlen", "--sq", "2", "--causal", "--heads", "32", "--format", "json"];
        var cuda = Run(["decode", "--backend", "cuda", .. shape]);
        var cpu = Run(["decode", "--backend", "cpu", .. shape]);
        Assert.True(cuda.ExitCode == 0, cuda.Err);
        Assert.True(cpu.ExitCode == 0, cpu.Err);
        using var a = JsonDocument.Parse(cuda.Out);
        using var b = JsonDocument.Parse(cpu.Out);
        // The warm time is the median of the timed calls, and the cold call is timed apart.
        Assert.Equal(FlashMla.Cli.Commands.DecodeCommand.DefaultRepeat, a.RootElement.GetProperty("repeat").GetInt32());
        Assert.InRange(a.RootElement.GetProperty("ms").GetDouble(), a.RootElement.GetProperty("warm_ms_min").GetDouble(), a.RootElement.GetProperty("warm_ms_max").GetDouble());
        Assert.True(a.RootElement.GetProperty("cold_ms").GetDouble() > 0);
        var sumA = a.RootElement.GetProperty("out_abs_sum").GetDouble();
        var sumB = b.RootElement.GetProperty("out_abs_sum").GetDouble();
        Assert.InRange(Math.Abs(sumA - sumB) / sumB, 0, 1e-3);
    }

    [Fact]
    public void Bench_plot_of_a_live_run_is_a_well_formed_svg()
    {
        RequireCuda();
        var file = Path.Combine(Path.GetTempPath(), $"flashmla-bench-plot-{Environment.ProcessId}.svg");
        try
        {
            var (code, _, error) = Run("bench", "--batch", "2", "--seqlen", "256", "--heads", "16", "--iters", "5", "--warmup", "1", "--plot", file);
            Assert.True(code == 0, error);
            var svg = System.Xml.Linq.XDocument.Load(file);
            Assert.Equal("svg", svg.Root!.Name.LocalName);
            Assert.Contains("Roofline", svg.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void Bench_single_case_writes_a_json_record()
    {
        RequireCuda();
        var file = Path.Combine(Path.GetTempPath(), $"flashmla-bench-{Environment.ProcessId}.json");
        try
        {
            var (code, output, error) = Run(
                "bench", "--batch", "2", "--seqlen", "256", "--heads", "16", "--iters", "5", "--warmup", "1",
                "--format", "json", "--output", file);
            Assert.True(code == 0, error);
            using var json = JsonDocument.Parse(output);
            var list = json.RootElement.EnumerateArray().ToArray();
            Assert.Equal(2, list.Length);
            Assert.Equal("run", list[0].GetProperty("kind").GetString());
            var record = list[1];
            Assert.Equal("b2 s_q1 h16 s_k256 fixed", record.GetProperty("name").GetString());
            Assert.True(record.GetProperty("ms").GetDouble() > 0);
            Assert.True(record.GetProperty("graph_us").GetDouble() > 0);
            Assert.True(record.GetProperty("copy_gbps").GetDouble() > 0);
            Assert.Equal("cuda", record.GetProperty("backend").GetString());
            Assert.Equal(output, File.ReadAllText(file));
        }
        finally
        {
            File.Delete(file);
        }
    }
}
