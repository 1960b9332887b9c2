using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using FlashMla.Cuda.Native;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FlashMla.Cuda;

/// <summary>
/// The loaded CUDA driver library (<c>libcuda.so.1</c> / <c>nvcuda.dll</c>) with its entry points
/// resolved and <c>cuInit</c> done.
/// </summary>
/// <remarks>
/// <para>
/// The library is looked for as <c>libcuda.so.1</c> then <c>libcuda.so</c> on Linux and
/// <c>nvcuda.dll</c> on Windows. The environment variable <c>FLASHMLA_CUDA_LIBRARY</c>, when set,
/// replaces that list with the one name or path it holds. Entry points are resolved once through
/// <c>cuGetProcAddress_v2</c> at the ABI versions the binding declares, falling back to the
/// versioned export names.
/// </para>
/// <para>
/// <see cref="Load"/> returns one shared instance per process once loading succeeded; failures
/// are not remembered, so a later call tries again. The driver API is thread-safe; so is this
/// class.
/// </para>
/// </remarks>
public sealed unsafe class CudaDriver
{
    /// <summary>The environment variable that overrides the driver library name or path.</summary>
    public const string LibraryEnvironmentVariable = "FLASHMLA_CUDA_LIBRARY";

    private static readonly Lock s_loadLock = new();
    private static CudaDriver? s_shared;

    private readonly SymbolResolver _resolver;

    private CudaDriver(nint library, string libraryName, SymbolResolver resolver, DriverApi api, int version)
    {
        LibraryHandle = library;
        LibraryName = libraryName;
        _resolver = resolver;
        Api = api;
        Version = version;
    }

    /// <summary>The name or path the library was loaded from.</summary>
    public string LibraryName { get; }

    /// <summary>The native library handle.</summary>
    public nint LibraryHandle { get; }

    /// <summary>The CUDA version the driver supports (<c>cuDriverGetVersion</c>): 1000·major + 10·minor, e.g. 13000.</summary>
    public int Version { get; }

    /// <summary>The driver's CUDA version as "major.minor", e.g. "13.0".</summary>
    public string VersionString => DriverApi.FormatVersion(Version);

    /// <summary>True when entry points were resolved through <c>cuGetProcAddress_v2</c>.</summary>
    public bool UsesGetProcAddress => _resolver.UsesGetProcAddress;

    /// <summary>True when the driver offers <c>cuTensorMapEncodeTiled</c> (CUDA ≥ 12.0).</summary>
    public bool SupportsTensorMaps => Api.cuTensorMapEncodeTiled != null;

    /// <summary>The number of CUDA devices visible to the process.</summary>
    public int DeviceCount
    {
        get
        {
            int count;
            Check(Api.cuDeviceGetCount(&count));
            return count;
        }
    }

    internal DriverApi Api { get; }

    /// <summary>
    /// Loads the driver (once per process), resolves its entry points and calls <c>cuInit(0)</c>.
    /// </summary>
    /// <param name="logger">Receives the load (library, CUDA version, device count) or why it failed; only the call that loads the driver logs. Null: no logging.</param>
    /// <returns>The shared driver instance.</returns>
    /// <exception cref="CudaLibraryLoadException">No candidate library could be loaded, or required entry points are missing; the message lists every name tried and why it failed.</exception>
    /// <exception cref="CudaException"><c>cuInit</c> failed (for example <c>CUDA_ERROR_NO_DEVICE</c>).</exception>
    public static CudaDriver Load(ILogger? logger = null)
    {
        var shared = Volatile.Read(ref s_shared);
        if (shared is not null)
        {
            return shared;
        }

        lock (s_loadLock)
        {
            s_shared ??= LoadUncached(Environment.GetEnvironmentVariable(LibraryEnvironmentVariable), logger);
            return s_shared;
        }
    }

    /// <summary>
    /// Tries to load the driver without throwing; used by <c>flashmla info</c> and by test skip logic.
    /// </summary>
    /// <param name="driver">The driver when loading succeeded.</param>
    /// <param name="reason">Why loading failed: the load trace, the missing entry points, or the <c>cuInit</c> error; empty on success.</param>
    /// <param name="logger">As for <see cref="Load"/>.</param>
    /// <returns>True when the driver is usable.</returns>
    public static bool TryLoad([NotNullWhen(true)] out CudaDriver? driver, out string reason, ILogger? logger = null)
    {
        try
        {
            driver = Load(logger);
            reason = string.Empty;
            return true;
        }
        catch (Exception ex) when (ex is CudaLibraryLoadException or CudaException or DllNotFoundException or BadImageFormatException or EntryPointNotFoundException)
        {
            driver = null;
            reason = ex.Message;
            return false;
        }
    }

    /// <summary>The library names tried, in order, for an override value (null or empty for none).</summary>
    internal static IReadOnlyList<string> CandidateNames(string? overrideName)
    {
        if (!string.IsNullOrWhiteSpace(overrideName))
        {
            return [overrideName.Trim()];
        }

        if (OperatingSystem.IsWindows())
        {
            return ["nvcuda.dll"];
        }

        return ["libcuda.so.1", "libcuda.so"];
    }

    /// <summary>Loads the driver from the candidates for <paramref name="overrideName"/>, without the process-wide cache, and logs the outcome.</summary>
    internal static CudaDriver LoadUncached(string? overrideName, ILogger? logger = null)
    {
        logger ??= NullLogger.Instance;
        try
        {
            var driver = LoadCore(overrideName);
            if (logger.IsEnabled(LogLevel.Information))
            {
                CudaLog.DriverLoaded(logger, driver.LibraryName, driver.VersionString, driver.DeviceCount, driver.UsesGetProcAddress ? "cuGetProcAddress_v2" : "versioned exports");
            }

            return driver;
        }
        catch (Exception ex) when (ex is CudaLibraryLoadException or CudaException && LogFailure(logger, ex))
        {
            throw; // not reached: the filter logs and declines
        }
    }

    private static bool LogFailure(ILogger logger, Exception ex)
    {
        CudaLog.DriverLoadFailed(logger, ex.Message);
        return false;
    }

    private static CudaDriver LoadCore(string? overrideName)
    {
        var attempts = new List<CudaLibraryLoadAttempt>();
        nint library = 0;
        string? loadedName = null;
        foreach (var name in CandidateNames(overrideName))
        {
            try
            {
                library = NativeLibrary.Load(name);
                loadedName = name;
                break;
            }
            catch (Exception ex) when (ex is DllNotFoundException or BadImageFormatException or ArgumentException)
            {
                attempts.Add(new CudaLibraryLoadAttempt(name, LoaderReason(ex)));
            }
        }

        if (library == 0 || loadedName is null)
        {
            var source = string.IsNullOrWhiteSpace(overrideName)
                ? "the CUDA driver library could not be loaded (is the NVIDIA driver installed?)"
                : $"the CUDA driver library named by {LibraryEnvironmentVariable} could not be loaded";
            throw new CudaLibraryLoadException(source + "; tried:", attempts);
        }

        var resolver = new SymbolResolver(library);

        // Bootstrap with the plain exports, which have never changed ABI: cuInit must succeed
        // before anything else is worth resolving.
        var init = (delegate* unmanaged<uint, CudaResult>)resolver.Export("cuInit");
        var getVersion = (delegate* unmanaged<int*, CudaResult>)resolver.Export("cuDriverGetVersion");
        if (init == null || getVersion == null)
        {
            attempts.Add(new CudaLibraryLoadAttempt(loadedName, "loaded, but it does not export cuInit/cuDriverGetVersion (not a CUDA driver library)"));
            throw new CudaLibraryLoadException("the CUDA driver library could not be used; tried:", attempts);
        }

        // cuInit first: entry points are then resolved against an initialised driver, and a
        // failure (no device, say) is reported as such rather than as missing symbols.
        var initResult = init(0);
        int version = 0;
        _ = getVersion(&version);

        var api = new DriverApi();
        var missing = api.Resolve(resolver);
        if (missing.Count > 0)
        {
            attempts.Add(new CudaLibraryLoadAttempt(
                loadedName,
                $"loaded (driver CUDA {DriverApi.FormatVersion(version)}), but required entry points are missing: {string.Join("; ", missing)}"));
            throw new CudaLibraryLoadException("the CUDA driver is too old for FlashMLA.NET (needs CUDA 12.0 or newer); tried:", attempts);
        }

        var driver = new CudaDriver(library, loadedName, resolver, api, version);
        if (initResult != CudaResult.Success)
        {
            throw driver.Error(initResult, "cuInit(0)", $"driver library {loadedName}, CUDA {DriverApi.FormatVersion(version)}");
        }

        return driver;
    }

    /// <summary>Returns device <paramref name="ordinal"/>.</summary>
    /// <param name="ordinal">The device index, 0 ≤ ordinal &lt; <see cref="DeviceCount"/>.</param>
    /// <returns>The device.</returns>
    public CudaDevice GetDevice(int ordinal)
    {
        var count = DeviceCount;
        ArgumentOutOfRangeException.ThrowIfNegative(ordinal);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(ordinal, count);
        int device;
        Check(Api.cuDeviceGet(&device, ordinal));
        return new CudaDevice(this, ordinal, device);
    }

    /// <summary>The name of a result code (<c>cuGetErrorName</c>), or "CUresult N" when the driver does not know it.</summary>
    /// <param name="result">The code.</param>
    /// <returns>The name.</returns>
    public string GetErrorName(CudaResult result)
    {
        byte* s = null;
        if (Api.cuGetErrorName != null && Api.cuGetErrorName(result, &s) == CudaResult.Success && s != null)
        {
            return Marshal.PtrToStringUTF8((nint)s) ?? $"CUresult {(int)result}";
        }

        return $"CUresult {(int)result}";
    }

    /// <summary>The description of a result code (<c>cuGetErrorString</c>).</summary>
    /// <param name="result">The code.</param>
    /// <returns>The description.</returns>
    public string GetErrorString(CudaResult result)
    {
        byte* s = null;
        if (Api.cuGetErrorString != null && Api.cuGetErrorString(result, &s) == CudaResult.Success && s != null)
        {
            return Marshal.PtrToStringUTF8((nint)s) ?? "unrecognized error code";
        }

        return "unrecognized error code";
    }

    /// <summary>
    /// The loader's own error text (dlerror / the Win32 message): the last line of the runtime's
    /// message, which otherwise adds generic advice.
    /// </summary>
    private static string LoaderReason(Exception ex)
    {
        var lines = ex.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return lines.Length > 1 ? lines[^1] : ex.Message.Trim();
    }

    /// <summary>Builds the exception for a failed call.</summary>
    internal CudaException Error(CudaResult result, string call, string? detail = null) =>
        new(result, GetErrorName(result), GetErrorString(result), call, detail);

    /// <summary>Throws <see cref="CudaException"/> unless <paramref name="result"/> is success.</summary>
    internal void Check(CudaResult result, [CallerArgumentExpression(nameof(result))] string call = "")
    {
        if (result != CudaResult.Success)
        {
            throw Error(result, call);
        }
    }
}
