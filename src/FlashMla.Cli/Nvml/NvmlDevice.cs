using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using System.Text;

namespace FlashMla.Cli.Nvml;

/// <summary>
/// One GPU as NVML sees it: the driver version and the current clocks, read through the driver's
/// management library. NVML is initialised when this opens and shut down when it is disposed.
/// Reads never throw: a failed read is null, and <see cref="LastError"/> says why.
/// </summary>
internal sealed unsafe class NvmlDevice : IDisposable
{
    /// <summary>The environment variable that replaces the library names tried with the one name or path it holds.</summary>
    public const string LibraryEnvironmentVariable = "FLASHMLA_NVML_LIBRARY";

    private readonly NvmlApi _api;
    private readonly nint _library;
    private readonly nint _device;
    private bool _disposed;

    private NvmlDevice(NvmlApi api, nint library, nint device, string libraryName, string? driverVersion, string matchedBy)
    {
        _api = api;
        _library = library;
        _device = device;
        LibraryName = libraryName;
        DriverVersion = driverVersion;
        MatchedBy = matchedBy;
    }

    /// <summary>The library name or path that was loaded.</summary>
    public string LibraryName { get; }

    /// <summary>The driver version (<c>nvmlSystemGetDriverVersion</c>), e.g. "580.65.06"; null when the read failed.</summary>
    public string? DriverVersion { get; }

    /// <summary>How the NVML device was matched to the CUDA device: "PCI bus id …" or "index …".</summary>
    public string MatchedBy { get; }

    /// <summary>Why the last read returned null; null after a successful read.</summary>
    public string? LastError { get; private set; }

    /// <summary>The library names tried, in order, for an override value (null or empty for none).</summary>
    public static IReadOnlyList<string> CandidateNames(string? overrideName) =>
        !string.IsNullOrWhiteSpace(overrideName) ? [overrideName.Trim()]
        : OperatingSystem.IsWindows() ? ["nvml.dll"]
        : ["libnvidia-ml.so.1", "libnvidia-ml.so"];

    /// <summary>
    /// Loads NVML, initialises it and finds the GPU: by <paramref name="pciBusId"/> (the CUDA
    /// device's "domain:bus:device") when given and supported, else by <paramref name="index"/>.
    /// </summary>
    /// <param name="pciBusId">The CUDA device's PCI location, or null.</param>
    /// <param name="index">The NVML index to use when the PCI id does not match.</param>
    /// <param name="device">The device on success.</param>
    /// <param name="reason">Why it failed; empty on success, or a note on how the device was matched.</param>
    /// <param name="libraryNames">The library names to try; null for <see cref="CandidateNames"/> of <see cref="LibraryEnvironmentVariable"/>.</param>
    public static bool TryOpen(string? pciBusId, int index, [NotNullWhen(true)] out NvmlDevice? device, out string reason, IReadOnlyList<string>? libraryNames = null)
    {
        device = null;
        libraryNames ??= CandidateNames(Environment.GetEnvironmentVariable(LibraryEnvironmentVariable));
        var tried = new List<string>();
        nint library = 0;
        string? loadedName = null;
        foreach (var name in libraryNames)
        {
            if (NativeLibrary.TryLoad(name, out library))
            {
                loadedName = name;
                break;
            }
            tried.Add(name);
        }
        if (library == 0 || loadedName is null)
        {
            reason = $"the NVML library could not be loaded (tried {string.Join(", ", tried)}); it ships with the NVIDIA driver";
            return false;
        }

        var api = new NvmlApi();
        var missing = api.Resolve(library);
        if (missing.Count > 0)
        {
            NativeLibrary.Free(library);
            reason = $"{loadedName} does not export {string.Join(", ", missing)} (not an NVML library, or too old)";
            return false;
        }

        var init = api.nvmlInit_v2();
        if (init != NvmlApi.Success)
        {
            reason = $"nvmlInit_v2 failed: {api.Describe(init)}";
            NativeLibrary.Free(library);
            return false;
        }

        nint handle = 0;
        string matchedBy;
        var byPci = -1;
        if (!string.IsNullOrEmpty(pciBusId) && api.nvmlDeviceGetHandleByPciBusId_v2 != null)
        {
            var bytes = Encoding.ASCII.GetBytes(pciBusId + "\0");
            fixed (byte* p = bytes)
            {
                byPci = api.nvmlDeviceGetHandleByPciBusId_v2(p, &handle);
            }
        }
        if (byPci == NvmlApi.Success)
        {
            matchedBy = $"PCI bus id {pciBusId}";
            reason = string.Empty;
        }
        else
        {
            var byIndex = api.nvmlDeviceGetHandleByIndex_v2((uint)index, &handle);
            if (byIndex != NvmlApi.Success)
            {
                reason = $"no NVML device for the CUDA device: nvmlDeviceGetHandleByIndex_v2({index}) failed: {api.Describe(byIndex)}" +
                    (byPci >= 0 ? $"; by PCI bus id {pciBusId}: {api.Describe(byPci)}" : "");
                _ = api.nvmlShutdown();
                NativeLibrary.Free(library);
                return false;
            }
            matchedBy = $"index {index}";
            reason = pciBusId is null ? string.Empty
                : byPci >= 0 ? $"NVML found no device at PCI bus id {pciBusId} ({api.Describe(byPci)}); using NVML index {index}"
                : $"this NVML cannot look devices up by PCI bus id; using NVML index {index}";
        }

        device = new NvmlDevice(api, library, handle, loadedName, ReadDriverVersion(api, out var versionError), matchedBy);
        if (versionError is not null)
        {
            reason = reason.Length > 0 ? $"{reason}; {versionError}" : versionError;
        }
        return true;
    }

    /// <summary>The current SM clock in MHz (<c>nvmlDeviceGetClockInfo(NVML_CLOCK_SM)</c>), or null.</summary>
    public int? SmClockMhz() => Clock(NvmlApi.ClockSm, max: false);

    /// <summary>The current memory clock in MHz, or null.</summary>
    public int? MemoryClockMhz() => Clock(NvmlApi.ClockMem, max: false);

    /// <summary>The highest SM clock in MHz (<c>nvmlDeviceGetMaxClockInfo</c>), or null.</summary>
    public int? MaxSmClockMhz() => Clock(NvmlApi.ClockSm, max: true);

    /// <summary>The device name NVML reports, or null.</summary>
    public string? Name()
    {
        if (_disposed || _api.nvmlDeviceGetName == null)
        {
            return null;
        }
        var buffer = stackalloc byte[NvmlApi.DeviceNameBufferSize];
        var r = _api.nvmlDeviceGetName(_device, buffer, NvmlApi.DeviceNameBufferSize);
        return r == NvmlApi.Success ? Marshal.PtrToStringUTF8((nint)buffer) : null;
    }

    /// <summary>Shuts NVML down and releases the library. Idempotent.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _ = _api.nvmlShutdown();
        NativeLibrary.Free(_library);
    }

    private int? Clock(int type, bool max)
    {
        if (_disposed)
        {
            LastError = "NVML was shut down";
            return null;
        }
        var read = max ? _api.nvmlDeviceGetMaxClockInfo : _api.nvmlDeviceGetClockInfo;
        if (read == null)
        {
            LastError = "this NVML has no nvmlDeviceGetMaxClockInfo";
            return null;
        }
        uint mhz = 0;
        var r = read(_device, type, &mhz);
        if (r != NvmlApi.Success)
        {
            LastError = $"{(max ? "nvmlDeviceGetMaxClockInfo" : "nvmlDeviceGetClockInfo")} failed: {_api.Describe(r)}";
            return null;
        }
        LastError = null;
        return (int)mhz;
    }

    private static string? ReadDriverVersion(NvmlApi api, out string? error)
    {
        var buffer = stackalloc byte[NvmlApi.DriverVersionBufferSize];
        var r = api.nvmlSystemGetDriverVersion(buffer, NvmlApi.DriverVersionBufferSize);
        if (r != NvmlApi.Success)
        {
            error = $"nvmlSystemGetDriverVersion failed: {api.Describe(r)}";
            return null;
        }
        error = null;
        return Marshal.PtrToStringUTF8((nint)buffer);
    }
}
