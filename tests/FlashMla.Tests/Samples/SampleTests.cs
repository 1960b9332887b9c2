using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using FlashMla.Cuda;

namespace FlashMla.Tests.Samples;

/// <summary>
/// The programs under samples/ run as a user runs them, in their own process, and do what they say.
/// CpuQuickstart and CudaDecode are built next to the tests (project references), so they also run
/// from the bundle on a GPU machine; Interop is found in the source tree's build output (its
/// packages stay out of the tests' output) and is skipped where the sources are not present.
/// </summary>
[Collection(GpuCollection.Name)]
public sealed partial class SampleTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);

    [Fact]
    public void CpuQuickstart_Decodes_AndItsLseIsTheLogOfEachLength()
    {
        var (code, output) = Run(Path.Combine(AppContext.BaseDirectory, "CpuQuickstart"));

        Assert.True(code == 0, $"exit code {code}:{Environment.NewLine}{output}");
        var lengths = LengthsPattern().Match(output);
        var outSum = OutputSumPattern().Match(output);
        var lse = LseSumPattern().Match(output);
        Assert.True(lengths.Success && outSum.Success && lse.Success, $"unexpected output:{Environment.NewLine}{output}");
        var sumAbs = double.Parse(outSum.Groups["sum"].Value, CultureInfo.InvariantCulture);
        Assert.True(double.IsFinite(sumAbs) && sumAbs > 0, $"sum |out| = {sumAbs}");

        // The sample's keys and queries are in [-0.1, 0.1), so every score is within about 0.01 of 0
        // and a row's LSE is ln(length) to within that: Σ lse = h_q · s_q · Σ_b ln(len_b).
        var seqlens = lengths.Groups["lengths"].Value.Split(", ").Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        var rowsPerRequest = int.Parse(lse.Groups["heads"].Value, CultureInfo.InvariantCulture) * int.Parse(lse.Groups["sq"].Value, CultureInfo.InvariantCulture);
        var expected = rowsPerRequest * seqlens.Sum(n => Math.Log(n));
        var actual = double.Parse(lse.Groups["sum"].Value, CultureInfo.InvariantCulture);
        Assert.True(Math.Abs(actual - expected) < 0.01 * rowsPerRequest * seqlens.Length, $"sum lse = {actual}, expected about {expected}");
    }

    [Fact]
    public void CudaDecode_ReplaysItsGraphBitForBit_OrSaysWhyThereIsNoGpu()
    {
        var (code, output) = Run(Path.Combine(AppContext.BaseDirectory, "CudaDecode"));

        Assert.True(code == 0, $"exit code {code}:{Environment.NewLine}{output}");
        if (CudaDriver.TryLoad(out var driver, out _) && driver.DeviceCount > 0)
        {
            Assert.Contains("graph replay 0 equals the direct decode", output, StringComparison.Ordinal);
            Assert.Contains("graph replay 3", output, StringComparison.Ordinal);
        }
        else
        {
            Assert.StartsWith("No CUDA device is usable", output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Interop_BFloat16TypesOfTorchSharpAndOnnxRuntime_AgreeWithOursOnAllBitPatterns()
    {
        var (code, output) = Run(InteropExecutable(), "bfloat16");

        Assert.True(code == 0, $"exit code {code}:{Environment.NewLine}{output}");
        Assert.Contains("bfloat16: all 65536 bit patterns agree", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Interop_Recipes_RunOrSayWhatIsMissing()
    {
        var (code, output) = Run(InteropExecutable(), "torch", "ort");

        Assert.True(code == 0, $"exit code {code}:{Environment.NewLine}{output}");
        if (!CudaDriver.TryLoad(out var driver, out _) || driver.DeviceCount == 0)
        {
            Assert.Contains("torch: skipped: no CUDA device is usable", output, StringComparison.Ordinal);
            Assert.Contains("ort: skipped: no CUDA device is usable", output, StringComparison.Ordinal);
        }
        else
        {
            Assert.Matches("(?m)^torch: (skipped: .+|decoded on .+)$", output);
            Assert.Matches("(?m)^ort: (skipped: .+|decoded on .+)$", output);
        }
    }

    [Fact]
    public void Interop_UnknownCommand_ExitsWith2()
    {
        var (code, output) = Run(InteropExecutable(), "no-such-recipe");

        Assert.Equal(2, code);
        Assert.Contains("unknown command no-such-recipe", output, StringComparison.Ordinal);
    }

    /// <summary>samples/Interop's build output of the tests' configuration: bin/&lt;configuration&gt;/&lt;tfm&gt;/ as the tests'.</summary>
    private static string InteropExecutable()
    {
        var testsProject = SampleSources.FindUp("tests/FlashMla.Tests/FlashMla.Tests.csproj");
        if (testsProject is null)
        {
            Assert.Skip("the sources are not next to the test binaries (a bundle run), so samples/Interop is not built here");
        }

        var outputFolder = Path.GetRelativePath(Path.GetDirectoryName(testsProject)!, AppContext.BaseDirectory);
        var root = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(testsProject)!, "..", ".."));
        var executable = Path.Combine(root, "samples", "Interop", outputFolder, "Interop");
        var builtTree = AppContext.BaseDirectory.StartsWith(Path.Combine(Path.GetDirectoryName(testsProject)!, "bin"), StringComparison.Ordinal);
        if (!builtTree && !File.Exists(executable + ".dll"))
        {
            Assert.Skip($"the tests run from {AppContext.BaseDirectory}, not from the solution's build output (a bundle run), so samples/Interop is not built next to them");
        }

        Assert.True(File.Exists(executable + ".dll"), $"samples/Interop is not built at {executable}.dll; build the solution (dotnet build) first.");
        return executable;
    }

    /// <summary>Runs a sample's app host (the executable next to its dll) and returns its exit code and its merged output.</summary>
    private static (int ExitCode, string Output) Run(string executable, params string[] args)
    {
        if (OperatingSystem.IsWindows())
        {
            executable += ".exe";
        }

        Assert.True(File.Exists(executable), $"no sample executable at {executable}");
        var start = new ProcessStartInfo(executable, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {executable}");
        var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        if (!process.WaitForExit(Timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{executable} did not finish within {Timeout}");
        }

        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    [GeneratedRegex(@"lengths \[(?<lengths>\d+(, \d+)*)\]")]
    private static partial Regex LengthsPattern();

    [GeneratedRegex(@"sum \|out\| = (?<sum>[-\d.]+)")]
    private static partial Regex OutputSumPattern();

    [GeneratedRegex(@"lse \[\d+, (?<heads>\d+), (?<sq>\d+)\] float: sum lse = (?<sum>[-\d.]+)")]
    private static partial Regex LseSumPattern();
}
