using FlashMla.Cuda;
using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;

namespace FlashMla.Tests;

/// <summary>
/// Skips a test with a reason that is said in full once per test run. The first test skipped
/// under a summary (e.g. "no CUDA device") carries the whole reason (the driver's load trace, say);
/// every later one a single line: the summary and the name of the test that has the details. Each
/// skipped test still reports Skipped with a reason.
/// </summary>
public static class SkipReasons
{
    /// <summary>The summary of every skip for want of a usable CUDA device.</summary>
    public const string NoCudaDevice = "no CUDA device";

    private static readonly ConcurrentDictionary<string, string> FirstTestOf = new(StringComparer.Ordinal);

    /// <summary>Skips the calling test: with <paramref name="reason"/> the first time <paramref name="summary"/> is seen, else with the summary alone.</summary>
    /// <param name="summary">A one-line summary shared by all skips of this kind.</param>
    /// <param name="reason">The full reason.</param>
    [DoesNotReturn]
    public static void Skip(string summary, string reason) =>
        Assert.Skip(ReasonFor(summary, reason, TestContext.Current.Test?.TestDisplayName ?? "an unnamed test"));

    /// <summary>
    /// Skips the calling test for want of a CUDA device, under <see cref="NoCudaDevice"/>. When the
    /// driver library does not load, the full reason is its load trace (whichever test is first);
    /// else <paramref name="reason"/>.
    /// </summary>
    /// <param name="reason">Why the device is unusable, as the caller found.</param>
    [DoesNotReturn]
    public static void SkipNoCudaDevice(string reason) =>
        Skip(NoCudaDevice, CudaDriver.TryLoad(out _, out var loadTrace) ? reason : $"no usable CUDA driver: {loadTrace}");

    /// <summary>The reason <see cref="Skip"/> gives <paramref name="test"/>: the full one if it is the first test seen under the summary.</summary>
    /// <param name="summary">The summary.</param>
    /// <param name="reason">The full reason.</param>
    /// <param name="test">The test's display name.</param>
    /// <returns>The reason to report.</returns>
    internal static string ReasonFor(string summary, string reason, string test)
    {
        var first = FirstTestOf.GetOrAdd(summary, test);
        return string.Equals(first, test, StringComparison.Ordinal) ? reason : $"{summary} (see {first} for details)";
    }
}
