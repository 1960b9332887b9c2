using System.Runtime.InteropServices;

namespace FlashMla.Cli.Nvml;

/// <summary>
/// The NVML entry points the bench reads (nvml.h), as function pointers resolved by export name
/// from <c>libnvidia-ml.so.1</c> / <c>nvml.dll</c>, the management library that ships with the
/// NVIDIA driver. <c>nvmlReturn_t</c> and <c>nvmlClockType_t</c> are <see cref="int"/>,
/// <c>nvmlDevice_t</c> is <see cref="nint"/>, <c>unsigned int</c> is <see cref="uint"/>.
/// </summary>
internal sealed unsafe class NvmlApi
{
    public const int Success = 0;
    public const int ClockSm = 1;
    public const int ClockMem = 2;

    /// <summary>NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE.</summary>
    public const int DriverVersionBufferSize = 80;

    /// <summary>NVML_DEVICE_NAME_V2_BUFFER_SIZE.</summary>
    public const int DeviceNameBufferSize = 96;

    // Required.
    public delegate* unmanaged<int> nvmlInit_v2;
    public delegate* unmanaged<int> nvmlShutdown;
    public delegate* unmanaged<byte*, uint, int> nvmlSystemGetDriverVersion;
    public delegate* unmanaged<uint, nint*, int> nvmlDeviceGetHandleByIndex_v2;
    public delegate* unmanaged<nint, int, uint*, int> nvmlDeviceGetClockInfo;

    // Optional: null when the library lacks them.
    public delegate* unmanaged<byte*, nint*, int> nvmlDeviceGetHandleByPciBusId_v2;
    public delegate* unmanaged<nint, int, uint*, int> nvmlDeviceGetMaxClockInfo;
    public delegate* unmanaged<nint, byte*, uint, int> nvmlDeviceGetName;
    public delegate* unmanaged<int, byte*> nvmlErrorString;

    /// <summary>Resolves the entry points from a loaded library; returns the required ones that are missing.</summary>
    public List<string> Resolve(nint library)
    {
        var missing = new List<string>();
        nint Get(string name, bool required)
        {
            if (NativeLibrary.TryGetExport(library, name, out var p))
            {
                return p;
            }
            if (required)
            {
                missing.Add(name);
            }
            return 0;
        }

        nvmlInit_v2 = (delegate* unmanaged<int>)Get("nvmlInit_v2", true);
        nvmlShutdown = (delegate* unmanaged<int>)Get("nvmlShutdown", true);
        nvmlSystemGetDriverVersion = (delegate* unmanaged<byte*, uint, int>)Get("nvmlSystemGetDriverVersion", true);
        nvmlDeviceGetHandleByIndex_v2 = (delegate* unmanaged<uint, nint*, int>)Get("nvmlDeviceGetHandleByIndex_v2", true);
        nvmlDeviceGetClockInfo = (delegate* unmanaged<nint, int, uint*, int>)Get("nvmlDeviceGetClockInfo", true);
        nvmlDeviceGetHandleByPciBusId_v2 = (delegate* unmanaged<byte*, nint*, int>)Get("nvmlDeviceGetHandleByPciBusId_v2", false);
        nvmlDeviceGetMaxClockInfo = (delegate* unmanaged<nint, int, uint*, int>)Get("nvmlDeviceGetMaxClockInfo", false);
        nvmlDeviceGetName = (delegate* unmanaged<nint, byte*, uint, int>)Get("nvmlDeviceGetName", false);
        nvmlErrorString = (delegate* unmanaged<int, byte*>)Get("nvmlErrorString", false);
        return missing;
    }

    /// <summary>"NVML message (code n)", or "NVML error n" when the library has no nvmlErrorString.</summary>
    public string Describe(int code)
    {
        if (nvmlErrorString != null)
        {
            var text = Marshal.PtrToStringUTF8((nint)nvmlErrorString(code));
            if (!string.IsNullOrEmpty(text))
            {
                return $"{text} (NVML code {code})";
            }
        }
        return $"NVML error {code}";
    }
}
