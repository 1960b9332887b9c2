using System.Text.Json.Nodes;
using FlashMla.Cli;
using FlashMla.Cli.Bench;
using FlashMla.Cli.Commands;
using FlashMla.Testing;

namespace FlashMla.Tests.Cli;

/// <summary>
/// Sizes too large for the process are refused before anything of their size is allocated, with
/// exit code 2 and an error that names the option (or the cases file's field) that made them so.
/// </summary>
public sealed class CaseBudgetTests
{
    /// <summary>More than the refusal itself may allocate (a size check allocates a few KB).</summary>
    private const long AllocationBound = 16L << 20;

    private static (int ExitCode, string Out, string Err, long Allocated) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var before = GC.GetAllocatedBytesForCurrentThread();
        var code = CliApp.Run(args, stdout, stderr);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        return (code, stdout.ToString(), stderr.ToString(), allocated);
    }

    [Theory]
    // Each was a new user's bug: SIGABRT (out of memory); 3.9 GB allocated before the refusal; exit 1.
    [InlineData("--batch", "2147483647", "--batch 2147483647")]
    [InlineData("--batch", "1000000000", "--batch 1000000000")]
    // Was "needs a 0.0 GiB KV cache": the error named the wrong tensor.
    [InlineData("--heads", "1000000000", "--heads 1000000000")]
    [InlineData("--sq", "2147483647", "--sq 2147483647")]
    // Overflowed int, then reported a block-table capacity error.
    [InlineData("--seqlen", "2147483647", "--seqlen 2147483647")]
    [InlineData("--page-size", "2147483647", "--page-size 2147483647")]
    [InlineData("--kv-heads", "1000000", "--kv-heads 1000000", "--heads", "1000000", "--batch", "1")]
    public void Decode_refuses_a_too_large_size_before_allocating_and_names_its_option(string option, string value, string named, params string[] more)
    {
        var (code, output, error, allocated) = Run(["decode", "--backend", "cpu", option, value, .. more]);
        Assert.Equal(2, code);
        Assert.Equal(string.Empty, output);
        Assert.Contains("error: " + named + " is too large", error, StringComparison.Ordinal);
        Assert.DoesNotContain("0.0 GiB", error, StringComparison.Ordinal);
        Assert.DoesNotContain("block-table", error, StringComparison.Ordinal);
        Assert.InRange(allocated, 0, AllocationBound);
    }

    [Fact]
    public void Decode_with_variable_lengths_is_checked_again_with_the_drawn_lengths()
    {
        // With s_k as the longest length the case fits; one drawn length of 2^30 makes its cache too large.
        var spec = DecodeCommand.Defaults with { Batch = 2, SeqlenK = 1000, Varlen = true, QueryHeads = 16 };
        CaseBudget.CheckDecode(spec, null, ShapeNames.Options, DecodeCommand.Defaults, CaseBudget.HostBudgetBytes);
        var error = Assert.Throws<CliUsageException>(() =>
            CaseBudget.CheckDecode(spec, [1000, 1 << 30], ShapeNames.Options, DecodeCommand.Defaults, CaseBudget.HostBudgetBytes));
        Assert.StartsWith("--seqlen 1000 (its longest length 1073741824) is too large: k_cache [", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_of_a_case_that_fits_passes_the_check_and_runs()
    {
        DecodeCommand.CheckSize(DecodeCommand.Defaults with { Batch = 2, SeqlenK = 300, Varlen = true, QueryHeads = 16 });
        var (code, _, error, _) = Run("decode", "--backend", "cpu", "--batch", "2", "--seqlen", "300", "--heads", "16", "--format", "json");
        Assert.True(code == 0, error);
    }

    [Fact]
    public void The_host_budget_names_the_largest_array_and_the_budget()
    {
        var spec = DecodeCommand.Defaults with { Batch = 512, SeqlenK = 4096 };
        // 512 requests of 4096 tokens: a 2.25 GiB cache, over a budget of 1 GiB.
        var error = Assert.Throws<CliUsageException>(() =>
            CaseBudget.CheckDecode(spec, null, ShapeNames.Options, DecodeCommand.Defaults, 1L << 30));
        Assert.StartsWith("--batch 512 is too large: the case's host arrays need", error.Message, StringComparison.Ordinal);
        Assert.Contains("k_cache [32768, 64, 1, 576] bf16: 2.25 GiB", error.Message, StringComparison.Ordinal);
        Assert.Contains("budget of 1.00 GiB", error.Message, StringComparison.Ordinal);

        // The same case within a budget that holds it passes.
        CaseBudget.CheckDecode(spec, null, ShapeNames.Options, DecodeCommand.Defaults, 64L << 30);
    }

    [Fact]
    public void Sizes_saturate_instead_of_overflowing()
    {
        Assert.Equal(long.MaxValue, CaseBudget.Product(int.MaxValue, int.MaxValue, int.MaxValue));
        Assert.Equal(6, CaseBudget.Product(1, 2, 3));
        Assert.Equal(0, CaseBudget.Product(5, 0, long.MaxValue));
        Assert.Equal(long.MaxValue, CaseBudget.Sum([long.MaxValue - 1, 5]));
        Assert.Equal(33_554_432, DecodeCase.TableColumns(new DecodeCaseSpec { PageBlockSize = 64 }, int.MaxValue));
        Assert.Equal(33_554_432, CaseBudget.PagesOf(int.MaxValue, 64));
    }

    [Theory]
    [InlineData("--batch", "2147483647", "--batch 2147483647")]
    [InlineData("--batch", "1000000000", "--batch 1000000000")]
    [InlineData("--seqlen", "2147483647", "--seqlen 2147483647", "--page-size", "1")]
    public void Bench_refuses_a_too_large_size_before_allocating_even_without_a_device(string option, string value, string named, params string[] more)
    {
        var (code, output, error, allocated) = Run(["bench", option, value, .. more]);
        Assert.Equal(2, code);
        Assert.Equal(string.Empty, output);
        Assert.Contains("error: " + named + " is too large", error, StringComparison.Ordinal);
        Assert.InRange(allocated, 0, AllocationBound);
    }

    [Theory]
    [InlineData("--iters", "2147483647")]
    [InlineData("--warmup", "2147483647")]
    [InlineData("--iters", "100001")]
    public void Bench_iteration_counts_are_bounded(string option, string value)
    {
        var (code, _, error, _) = Run("bench", option, value);
        Assert.Equal(2, code);
        Assert.Contains($"{option} must be in [", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_cases_file_too_large_for_int32_pages_is_refused_naming_the_case_and_field()
    {
        var file = Path.Combine(Path.GetTempPath(), $"flashmla-huge-{Environment.ProcessId}-{Guid.NewGuid():N}.json");
        try
        {
            var huge = new JsonObject
            {
                ["name"] = "huge",
                ["b"] = 2,
                ["s_q"] = 1,
                ["h_q"] = 16,
                ["h_kv"] = 1,
                ["s_k"] = int.MaxValue,
                ["varlen"] = false,
                ["causal"] = false,
                ["page_block_size"] = 1,
                ["seqlens"] = new JsonArray(int.MaxValue, int.MaxValue),
            };
            File.WriteAllText(file, new JsonArray(huge).ToJsonString());
            var (code, _, error, _) = Run("bench", "--cases", file);
            Assert.Equal(2, code);
            Assert.Contains("case [0] \"huge\" field s_k 2147483647 is too large", error, StringComparison.Ordinal);
            Assert.Contains("int32", error, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void Decode_on_a_gpu_must_fit_the_devices_free_memory()
    {
        var spec = DecodeCommand.Defaults with { SeqlenK = 1 << 20 };
        // 4 requests of 2^20 tokens: a 4.5 GiB cache, within the host budget of a large machine but not 4 GiB of device memory.
        var error = Assert.Throws<CliUsageException>(() =>
            CaseBudget.CheckDecodeDevice(spec, null, ShapeNames.Options, DecodeCommand.Defaults, 4L << 30));
        Assert.StartsWith("--seqlen 1048576 is too large: the case's device buffers need", error.Message, StringComparison.Ordinal);
        Assert.Contains("k_cache [65536, 64, 1, 576] bf16", error.Message, StringComparison.Ordinal);
        CaseBudget.CheckDecodeDevice(spec, null, ShapeNames.Options, DecodeCommand.Defaults, 8L << 30);
    }

    [Fact]
    public void Bench_cases_must_fit_the_devices_free_memory()
    {
        var spec = BenchSuites.Defaults with { QueryHeads = 1 << 20 };
        var lengths = Enumerable.Repeat(spec.SeqlenK, spec.Batch).ToArray();
        var error = Assert.Throws<CliUsageException>(() =>
            CaseBudget.CheckBenchDevice(spec, lengths, ShapeNames.Options, BenchSuites.Defaults, 80L << 30));
        Assert.StartsWith("--heads 1048576 is too large: one copy of the case's device buffers need", error.Message, StringComparison.Ordinal);
        Assert.Contains("80.00 GiB free on the device", error.Message, StringComparison.Ordinal);

        // The default case fits.
        CaseBudget.CheckBenchDevice(BenchSuites.Defaults, lengths, ShapeNames.Options, BenchSuites.Defaults, 80L << 30);
    }
}
