using MlaDecodeLoop;

namespace FlashMla.Tests.Samples;

/// <summary>
/// samples/MlaDecodeLoop runs its decode loop (prefill, a fork whose shared partial page is copied
/// on write, a finished request) and its own checks pass: on the CPU against the float64
/// reference here, on CUDA against the CPU backend where a GPU is present.
/// </summary>
public sealed class MlaDecodeLoopTests
{
    [Fact]
    public void CpuBackend_AllStepsMatch()
    {
        var (code, output, error) = Run("--backend", "cpu", "--layers", "1", "--steps", "6");
        Assert.True(code == 0, $"exit {code}{Environment.NewLine}{output}{error}");
        Assert.Contains("all 6 steps match", output, StringComparison.Ordinal);
        Assert.Contains("request 0 forked", output, StringComparison.Ordinal);
        Assert.Contains("request 1 finished", output, StringComparison.Ordinal);
        Assert.Contains("step 2: lengths [703, 132, 1503, 703], 1 page copy", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--backend gpu")]
    [InlineData("--layers 0")]
    [InlineData("--steps")]
    [InlineData("--frobnicate 1")]
    public void BadCommandLine_ExitsWith2_AndSaysWhy(string commandLine)
    {
        var (code, _, error) = Run(commandLine.Split(' '));
        Assert.Equal(2, code);
        Assert.Contains("error: ", error, StringComparison.Ordinal);
        Assert.Contains("usage: MlaDecodeLoop", error, StringComparison.Ordinal);
    }

    internal static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = DecodeLoop.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}

/// <summary>The sample's CUDA backend: each step one replayed graph, checked against the CPU backend (skipped without a GPU).</summary>
[Collection(GpuCollection.Name)]
public sealed class MlaDecodeLoopGpuTests(GpuFixture gpu)
{
    [Fact]
    public void CudaBackend_AllStepsMatchTheCpuBackend()
    {
        _ = gpu.RequireDecoder();
        var (code, output, error) = MlaDecodeLoopTests.Run("--backend", "cuda", "--layers", "3", "--steps", "8");
        Assert.True(code == 0, $"exit {code}{Environment.NewLine}{output}{error}");
        Assert.Contains("each step one replayed CUDA graph", output, StringComparison.Ordinal);
        Assert.Contains("all 8 steps match", output, StringComparison.Ordinal);
    }
}
