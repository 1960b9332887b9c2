using System.Diagnostics;
using FlashMla.Cli.Backends;
using FlashMla.Cli.Nvml;

namespace FlashMla.Tests.Cli.Nvml;

/// <summary>Loading NVML: failures are reported, never thrown. They run everywhere.</summary>
public sealed class NvmlTests
{
    [Fact]
    public void Nvml_missing_library_is_reported_not_thrown()
    {
        Assert.False(NvmlDevice.TryOpen("0000:00:00", 0, out var device, out var reason, ["/nonexistent/libnvidia-ml.so.1"]));
        Assert.Null(device);
        Assert.Contains("/nonexistent/libnvidia-ml.so.1", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Nvml_library_without_the_entry_points_is_reported_not_thrown()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Skip("uses libc.so.6 as a library that is not NVML");
        }
        Assert.False(NvmlDevice.TryOpen(null, 0, out _, out var reason, ["libc.so.6"]));
        Assert.Contains("nvmlInit_v2", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Nvml_candidate_names()
    {
        Assert.Equal(["/x/libnvidia-ml.so.1"], NvmlDevice.CandidateNames(" /x/libnvidia-ml.so.1 "));
        Assert.Equal(OperatingSystem.IsWindows() ? ["nvml.dll"] : ["libnvidia-ml.so.1", "libnvidia-ml.so"], NvmlDevice.CandidateNames(null));
    }

    [Fact]
    public void Nvml_device_is_matched_by_pci_bus_id_then_by_index_and_read()
    {
        var library = FakeNvml.Build();
        Assert.True(NvmlDevice.TryOpen("0000:1b:00", 0, out var byPci, out var reason, [library]), reason);
        using (byPci)
        {
            Assert.Equal(string.Empty, reason);
            Assert.Equal(library, byPci.LibraryName);
            Assert.Equal("PCI bus id 0000:1b:00", byPci.MatchedBy);
            Assert.Equal("580.65.06", byPci.DriverVersion);
            Assert.Equal(1755, byPci.SmClockMhz());
            Assert.Null(byPci.LastError);
            Assert.Equal(3201, byPci.MemoryClockMhz());
            Assert.Equal(1980, byPci.MaxSmClockMhz());
            Assert.Null(byPci.Name());   // the stand-in has no nvmlDeviceGetName
        }

        Assert.True(NvmlDevice.TryOpen("0000:99:00", 0, out var byIndex, out reason, [library]), reason);
        using (byIndex)
        {
            Assert.Equal("index 0", byIndex.MatchedBy);
            Assert.Contains("no device at PCI bus id 0000:99:00 (Not Found (NVML code 6)); using NVML index 0", reason, StringComparison.Ordinal);
            Assert.Equal(1755, byIndex.SmClockMhz());
        }
        Assert.Null(byIndex.SmClockMhz());
        Assert.Equal("NVML was shut down", byIndex.LastError);

        Assert.False(NvmlDevice.TryOpen("0000:99:00", 2, out var none, out reason, [library]));
        Assert.Null(none);
        Assert.Contains("nvmlDeviceGetHandleByIndex_v2(2) failed: Invalid Argument (NVML code 2)", reason, StringComparison.Ordinal);
        Assert.Contains("by PCI bus id 0000:99:00: Not Found (NVML code 6)", reason, StringComparison.Ordinal);
    }
}

/// <summary>Builds FakeNvml/fake_nvml.c into a shared library once per test run, with the first C compiler found.</summary>
internal static class FakeNvml
{
    private static readonly Lazy<(string? Path, string Reason)> s_built = new(BuildOnce);

    /// <summary>The library's path; skips the calling test when it cannot be built here.</summary>
    public static string Build()
    {
        var (path, reason) = s_built.Value;
        if (path is null)
        {
            Assert.Skip(reason);
        }
        return path;
    }

    private static (string? Path, string Reason) BuildOnce()
    {
        if (!OperatingSystem.IsLinux())
        {
            return (null, "the NVML stand-in is built as a Linux shared library");
        }
        var source = Path.Combine(AppContext.BaseDirectory, "FakeNvml", "fake_nvml.c");
        if (!File.Exists(source))
        {
            return (null, $"{source} is missing");
        }
        var folder = Directory.CreateTempSubdirectory("flashmla-fake-nvml-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(folder, recursive: true);
            }
            catch (IOException)
            {
            }
        };
        var output = Path.Combine(folder, "libfake-nvml.so");
        var tried = new List<string>();
        foreach (var compiler in (string[])["clang-19", "clang", "cc", "gcc"])
        {
            try
            {
                using var process = Process.Start(new ProcessStartInfo(compiler, ["-shared", "-fPIC", "-O1", "-o", output, source])
                {
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                    UseShellExecute = false,
                });
                if (process is null)
                {
                    continue;
                }
                var error = process.StandardError.ReadToEnd();
                process.WaitForExit();
                if (process.ExitCode == 0 && File.Exists(output))
                {
                    return (output, string.Empty);
                }
                tried.Add($"{compiler}: exit {process.ExitCode}: {error.Trim()}");
            }
            catch (System.ComponentModel.Win32Exception)
            {
                tried.Add($"{compiler}: not found");
            }
        }
        return (null, $"no C compiler could build the NVML stand-in ({string.Join("; ", tried)})");
    }
}

/// <summary>NVML on the CUDA device; skips with the reason where there is no GPU or no NVML.</summary>
[Collection(GpuCollection.Name)]
public sealed class NvmlGpuTests
{
    [Fact]
    public void Nvml_reads_the_sm_clock_and_driver_version_of_the_cuda_device()
    {
        if (!CudaSession.TryOpen(out var session, out var reason))
        {
            SkipReasons.SkipNoCudaDevice(reason);
        }
        using (session)
        {
            var device = session.Context.Device;
            if (!NvmlDevice.TryOpen(device.PciLocation, device.Ordinal, out var nvml, out var nvmlReason))
            {
                Assert.Skip($"a CUDA device is present but NVML is not usable (the bench records null clocks then): {nvmlReason}");
            }
            using (nvml)
            {
                Assert.StartsWith("PCI bus id", nvml.MatchedBy, StringComparison.Ordinal);
                Assert.False(string.IsNullOrWhiteSpace(nvml.DriverVersion));
                var clock = nvml.SmClockMhz();
                Assert.True(clock is > 0, nvml.LastError);
                var max = nvml.MaxSmClockMhz();
                Assert.True(max is null || max >= clock, $"max {max} < current {clock}");
            }
        }
    }
}
