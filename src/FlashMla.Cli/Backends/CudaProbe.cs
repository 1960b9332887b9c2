using FlashMla.Cuda;
using FlashMla.Kernels;

namespace FlashMla.Cli.Backends;

/// <summary>What <c>flashmla info</c> reports about one device.</summary>
internal sealed record CudaDeviceInfo(
    int Ordinal,
    string Name,
    string ComputeCapability,
    int MultiprocessorCount,
    long TotalMemoryBytes,
    long L2CacheBytes,
    string? KernelTarget,
    string? Problem);

/// <summary>The result of looking for the CUDA driver and its devices.</summary>
internal sealed record CudaProbeResult
{
    public bool DriverLoaded { get; init; }
    public string? LibraryName { get; init; }
    /// <summary>cuDriverGetVersion: 1000·major + 10·minor, or 0.</summary>
    public int DriverVersion { get; init; }
    public string DriverVersionText { get; init; } = "-";
    public IReadOnlyList<CudaDeviceInfo> Devices { get; init; } = [];
    /// <summary>Why no device is usable, when none is.</summary>
    public string? Reason { get; init; }
    /// <summary>Library load attempts and their outcome.</summary>
    public IReadOnlyList<string> LoadTrace { get; init; } = [];
}

/// <summary>Looks for the CUDA driver and its devices without throwing.</summary>
internal static class CudaProbe
{
    public static CudaProbeResult Probe()
    {
        CudaDriver driver;
        try
        {
            driver = CudaDriver.Load();
        }
        catch (CudaLibraryLoadException e)
        {
            return new CudaProbeResult
            {
                Reason = FirstLine(e.Message),
                LoadTrace = [.. e.Attempts.Select(a => $"{a.Name}: {Condense(a.Name, a.Reason)}")],
            };
        }
        catch (CudaException e)
        {
            // The library loaded but cuInit failed (CUDA_ERROR_NO_DEVICE, a driver/kernel-module mismatch, ...).
            return new CudaProbeResult
            {
                DriverLoaded = true,
                Reason = e.Message,
            };
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or EntryPointNotFoundException)
        {
            return new CudaProbeResult { Reason = e.Message };
        }

        var trace = new List<string>
        {
            $"{driver.LibraryName}: loaded, CUDA {driver.VersionString}, entry points via " +
            (driver.UsesGetProcAddress ? "cuGetProcAddress" : "library exports"),
        };
        var devices = new List<CudaDeviceInfo>();
        string? reason = null;
        try
        {
            var count = driver.DeviceCount;
            for (var i = 0; i < count; i++)
            {
                devices.Add(Describe(driver.GetDevice(i)));
            }
            if (count == 0)
            {
                reason = "the driver loaded and initialised, but reports no devices";
            }
        }
        catch (CudaException e)
        {
            reason = e.Message;
        }

        return new CudaProbeResult
        {
            DriverLoaded = true,
            LibraryName = driver.LibraryName,
            DriverVersion = driver.Version,
            DriverVersionText = driver.VersionString,
            Devices = devices,
            Reason = reason,
            LoadTrace = trace,
        };
    }

    private static CudaDeviceInfo Describe(CudaDevice device)
    {
        var capability = device.ComputeCapability;
        string? target = null;
        string? problem = null;
        try
        {
            target = KernelLibrary.SelectTarget(capability);
        }
        catch (NotSupportedException e)
        {
            problem = e.Message;
        }
        return new CudaDeviceInfo(
            device.Ordinal,
            device.Name,
            capability.ToString(),
            device.MultiprocessorCount,
            device.TotalMemoryBytes,
            device.L2CacheSizeBytes,
            target,
            problem);
    }

    internal static string FirstLine(string message)
    {
        var end = message.IndexOf('\n', StringComparison.Ordinal);
        var line = (end < 0 ? message : message[..end]).TrimEnd(':', ';', ' ', '\r');
        return line.EndsWith("; tried", StringComparison.Ordinal) ? line[..^"; tried".Length] : line;
    }

    /// <summary>The loader's own error (dlerror) from .NET's long DllNotFoundException text.</summary>
    private static string Condense(string name, string reason)
    {
        var lines = reason.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (lines.Length == 0)
        {
            return reason;
        }
        var last = lines[^1];
        return last.StartsWith(name + ": ", StringComparison.Ordinal) ? last[(name.Length + 2)..] : last;
    }
}
