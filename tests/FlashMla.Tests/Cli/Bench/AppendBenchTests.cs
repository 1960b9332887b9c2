using System.Text.Json;
using FlashMla.Cli;
using FlashMla.Cli.Backends;
using FlashMla.Cli.Bench;
using FlashMla.Cli.Output;
using FlashMla.Tensors;

namespace FlashMla.Tests.Cli.Bench;

/// <summary>The CPU-side logic of <c>flashmla bench-append</c>: the byte count, the rotations' slot mappings, the records, the command line.</summary>
public sealed class AppendBenchTests
{
    private static (int ExitCode, string Out, string Err) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Theory]
    [InlineData(1, 1, ElementType.BFloat16, 2308L)]
    [InlineData(1024, 1, ElementType.BFloat16, (2L * 1024 * 576 * 2) + (4 * 1024))]
    [InlineData(131072, 1, ElementType.Float16, (2L * 131072 * 576 * 2) + (4 * 131072))]
    [InlineData(16, 2, ElementType.BFloat16, (2L * 16 * 2 * 576 * 2) + (4 * 16))]
    public void Bytes_AreRowsReadAndWrittenPlusSlots(int n, int kvHeads, ElementType type, long expected)
    {
        var c = new AppendBenchCase(n, kvHeads, 64, type, Split: false, Seed: 0);
        Assert.Equal(expected, c.Bytes);
    }

    [Theory]
    [InlineData(1, 64, 3)]
    [InlineData(100, 64, 4)]
    [InlineData(128, 16, 2)]
    public void SlotMappings_AreDistinctSlotsOfEachRotationsOwnPages(int n, int page, int rotations)
    {
        var c = new AppendBenchCase(n, 1, page, ElementType.BFloat16, Split: true, Seed: 0);
        var rng = new Random(TestSeeds.Next());
        var slots = c.SlotMappings(rotations, span => rng.Shuffle(span));
        Assert.Equal(rotations * n, slots.Length);
        var perRotation = c.PagesPerRotation * page;
        Assert.True(perRotation >= n);
        for (var r = 0; r < rotations; r++)
        {
            var mine = slots.AsSpan(r * n, n).ToArray();
            Assert.Equal(n, mine.Distinct().Count());
            Assert.All(mine, s => Assert.InRange(s, r * perRotation, ((r + 1) * perRotation) - 1));
        }
    }

    [Fact]
    public void Record_HasTheFieldsOfTheFigures()
    {
        var record = new AppendBenchRecord
        {
            Case = new AppendBenchCase(1024, 1, 64, ElementType.BFloat16, Split: false, Seed: 3),
            Ms = 0.01,
            GraphUs = 2.0,
            GraphUsMin = 1.9,
            GraphUsMax = 2.5,
            Rotations = 64,
            CallsPerGraph = 64,
            GraphReplays = 15,
            Iterations = 100,
            CopyGBps = 4000,
            Ctas = 32,
            Threads = 256,
            SmClockMhz = null,
            Gpu = "Test GPU",
            Commit = "abc1234",
        };
        var bytes = (2.0 * 1024 * 576 * 2) + (4 * 1024);
        Assert.Equal(bytes / 2e-6 / 1e9, record.GBps, 6);
        Assert.Equal(100 * record.GBps / 4000, record.CopyPercent!.Value, 6);
        using var json = JsonDocument.Parse(JsonOut.Render(record.Write));
        var root = json.RootElement;
        Assert.Equal("append n1024 h_kv1 page64 bf16 latent", root.GetProperty("name").GetString());
        Assert.Equal("append", root.GetProperty("kind").GetString());
        Assert.Equal(1024, root.GetProperty("n").GetInt32());
        Assert.Equal(bytes, root.GetProperty("bytes").GetDouble());
        Assert.Equal(1, root.GetProperty("launches_per_call").GetInt32());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("sm_clock_mhz").ValueKind);
        foreach (var field in new[] { "graph_us", "gbps", "copy_gbps", "gbps_pct_of_copy", "ms", "ctas", "rotations", "calls_per_graph", "dtype", "form", "commit" })
        {
            Assert.True(root.TryGetProperty(field, out _), $"no {field}");
        }
    }

    [Theory]
    [InlineData("bench-append", "--tokens", "0")]
    [InlineData("bench-append", "--dtype", "fp32")]
    [InlineData("bench-append", "--form", "both")]
    [InlineData("bench-append", "--page-size", "0")]
    [InlineData("bench-append", "--tokens", "x")]
    public void UsageErrors_ExitWith2(params string[] args)
    {
        var (code, output, error) = Run(args);
        Assert.Equal(2, code);
        Assert.Contains("error:", error, StringComparison.Ordinal);
        Assert.Equal(string.Empty, output);
    }

    [Fact]
    public void WithoutCuda_FailsPlainly()
    {
        if (CudaProbe.Probe().Devices.Count > 0)
        {
            Assert.Skip("a CUDA device is present");
        }

        var (code, _, error) = Run("bench-append", "--tokens", "16");
        Assert.Equal(1, code);
        Assert.Contains("CUDA", error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", error, StringComparison.Ordinal);
    }
}
