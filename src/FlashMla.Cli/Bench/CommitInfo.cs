using System.Diagnostics;

namespace FlashMla.Cli.Bench;

/// <summary>The commit recorded with benchmark results.</summary>
internal static class CommitInfo
{
    /// <summary>FLASHMLA_COMMIT, else <c>git rev-parse --short HEAD</c>, else "unknown".</summary>
    public static string Get()
    {
        var fromEnv = Environment.GetEnvironmentVariable("FLASHMLA_COMMIT");
        if (!string.IsNullOrWhiteSpace(fromEnv))
        {
            return fromEnv.Trim();
        }
        try
        {
            var start = new ProcessStartInfo("git", "rev-parse --short HEAD")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            using var process = Process.Start(start);
            if (process is null)
            {
                return "unknown";
            }
            var output = process.StandardOutput.ReadToEnd().Trim();
            _ = process.StandardError.ReadToEnd();
            if (!process.WaitForExit(5000))
            {
                process.Kill();
                return "unknown";
            }
            return process.ExitCode == 0 && output.Length > 0 ? output : "unknown";
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
        {
            return "unknown";
        }
    }
}
