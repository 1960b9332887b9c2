namespace FlashMla.Cuda.Native;

/// <summary>
/// The CUDA driver entry points the library calls, resolved once per loaded library.
/// </summary>
/// <remarks>
/// <para>
/// Each entry is resolved with <c>cuGetProcAddress_v2</c> (CUDA ≥ 12.0), asking for the exact ABI
/// version whose signature is declared here (the <c>PFN_name_vNNNNN</c> typedef versions of
/// cudaTypedefs.h), with <c>CU_GET_PROC_ADDRESS_LEGACY_STREAM</c>. When that fails (older driver,
/// or the symbol is unknown to it), the versioned export name is looked up with dlsym /
/// GetProcAddress instead (<c>cuMemAlloc_v2</c>, <c>cuStreamDestroy_v2</c>, …).
/// </para>
/// <para>
/// Handles (<c>CUcontext</c>, <c>CUstream</c>, …) are <see cref="nint"/>, <c>CUdeviceptr</c> is
/// <see cref="ulong"/>, <c>CUdevice</c> and enums are <see cref="int"/>, <c>size_t</c> is
/// <see cref="nuint"/>. <c>const char*</c> results are <c>byte*</c>.
/// </para>
/// </remarks>
internal sealed unsafe class DriverApi
{
    // Error handling, initialisation, version.
    public delegate* unmanaged<uint, CudaResult> cuInit;
    public delegate* unmanaged<int*, CudaResult> cuDriverGetVersion;
    public delegate* unmanaged<CudaResult, byte**, CudaResult> cuGetErrorName;
    public delegate* unmanaged<CudaResult, byte**, CudaResult> cuGetErrorString;

    // Devices.
    public delegate* unmanaged<int*, CudaResult> cuDeviceGetCount;
    public delegate* unmanaged<int*, int, CudaResult> cuDeviceGet;
    public delegate* unmanaged<byte*, int, int, CudaResult> cuDeviceGetName;
    public delegate* unmanaged<int*, int, int, CudaResult> cuDeviceGetAttribute;
    public delegate* unmanaged<nuint*, int, CudaResult> cuDeviceTotalMem;

    // Primary context and current context.
    public delegate* unmanaged<nint*, int, CudaResult> cuDevicePrimaryCtxRetain;
    public delegate* unmanaged<int, CudaResult> cuDevicePrimaryCtxRelease;
    public delegate* unmanaged<int, uint*, int*, CudaResult> cuDevicePrimaryCtxGetState;
    public delegate* unmanaged<nint, CudaResult> cuCtxSetCurrent;
    public delegate* unmanaged<nint*, CudaResult> cuCtxGetCurrent;
    public delegate* unmanaged<CudaResult> cuCtxSynchronize;
    public delegate* unmanaged<nuint*, nuint*, CudaResult> cuMemGetInfo;

    // Memory.
    public delegate* unmanaged<ulong*, nuint, CudaResult> cuMemAlloc;
    public delegate* unmanaged<ulong, CudaResult> cuMemFree;
    public delegate* unmanaged<ulong, void*, nuint, CudaResult> cuMemcpyHtoD;
    public delegate* unmanaged<void*, ulong, nuint, CudaResult> cuMemcpyDtoH;
    public delegate* unmanaged<ulong, ulong, nuint, CudaResult> cuMemcpyDtoD;
    public delegate* unmanaged<ulong, void*, nuint, nint, CudaResult> cuMemcpyHtoDAsync;
    public delegate* unmanaged<void*, ulong, nuint, nint, CudaResult> cuMemcpyDtoHAsync;
    public delegate* unmanaged<ulong, ulong, nuint, nint, CudaResult> cuMemcpyDtoDAsync;
    public delegate* unmanaged<ulong, byte, nuint, nint, CudaResult> cuMemsetD8Async;
    public delegate* unmanaged<ulong, ushort, nuint, nint, CudaResult> cuMemsetD16Async;
    public delegate* unmanaged<ulong, uint, nuint, nint, CudaResult> cuMemsetD32Async;
    public delegate* unmanaged<void**, nuint, uint, CudaResult> cuMemHostAlloc;
    public delegate* unmanaged<void*, CudaResult> cuMemFreeHost;

    // Streams and events.
    public delegate* unmanaged<nint*, uint, CudaResult> cuStreamCreate;
    public delegate* unmanaged<nint, CudaResult> cuStreamDestroy;
    public delegate* unmanaged<nint, CudaResult> cuStreamSynchronize;
    public delegate* unmanaged<nint, CudaResult> cuStreamQuery;
    public delegate* unmanaged<nint, nint, uint, CudaResult> cuStreamWaitEvent;
    public delegate* unmanaged<nint*, uint, CudaResult> cuEventCreate;
    public delegate* unmanaged<nint, CudaResult> cuEventDestroy;
    public delegate* unmanaged<nint, nint, CudaResult> cuEventRecord;
    public delegate* unmanaged<nint, CudaResult> cuEventSynchronize;
    public delegate* unmanaged<nint, CudaResult> cuEventQuery;
    public delegate* unmanaged<float*, nint, nint, CudaResult> cuEventElapsedTime;

    // Modules, functions, launches.
    public delegate* unmanaged<nint*, void*, uint, int*, void**, CudaResult> cuModuleLoadDataEx;
    public delegate* unmanaged<nint, CudaResult> cuModuleUnload;
    public delegate* unmanaged<nint*, nint, byte*, CudaResult> cuModuleGetFunction;
    public delegate* unmanaged<ulong*, nuint*, nint, byte*, CudaResult> cuModuleGetGlobal;
    public delegate* unmanaged<int*, int, nint, CudaResult> cuFuncGetAttribute;
    public delegate* unmanaged<nint, int, int, CudaResult> cuFuncSetAttribute;
    public delegate* unmanaged<CuLaunchConfig*, nint, void**, void**, CudaResult> cuLaunchKernelEx;

    /// <summary>Optional (CUDA ≥ 12.4): null when the driver lacks it.</summary>
    public delegate* unmanaged<nint, nuint, nuint*, nuint*, CudaResult> cuFuncGetParamInfo;

    // Graphs.
    public delegate* unmanaged<nint, int, CudaResult> cuStreamBeginCapture;
    public delegate* unmanaged<nint, nint*, CudaResult> cuStreamEndCapture;
    public delegate* unmanaged<nint, int*, CudaResult> cuStreamIsCapturing;
    public delegate* unmanaged<nint*, nint, ulong, CudaResult> cuGraphInstantiateWithFlags;
    public delegate* unmanaged<nint, nint, CudaResult> cuGraphLaunch;
    public delegate* unmanaged<nint, CudaResult> cuGraphDestroy;
    public delegate* unmanaged<nint, CudaResult> cuGraphExecDestroy;

    /// <summary>Optional (CUDA ≥ 12.0): null when the driver lacks it.</summary>
    public delegate* unmanaged<TensorMap*, int, uint, void*, ulong*, ulong*, uint*, uint*, int, int, int, int, CudaResult> cuTensorMapEncodeTiled;

    /// <summary>Resolves every entry point; returns the names of required symbols that are missing.</summary>
    public List<string> Resolve(SymbolResolver r)
    {
        var missing = new List<string>();

        nint Req(string name, int version, params string[] exports)
        {
            var p = r.Resolve(name, version, exports);
            if (p == 0)
            {
                missing.Add($"{name} (ABI {FormatVersion(version)}; exports tried: {string.Join(", ", exports)})");
            }

            return p;
        }

        cuInit = (delegate* unmanaged<uint, CudaResult>)Req("cuInit", 2000, "cuInit");
        cuDriverGetVersion = (delegate* unmanaged<int*, CudaResult>)Req("cuDriverGetVersion", 2020, "cuDriverGetVersion");
        cuGetErrorName = (delegate* unmanaged<CudaResult, byte**, CudaResult>)Req("cuGetErrorName", 6000, "cuGetErrorName");
        cuGetErrorString = (delegate* unmanaged<CudaResult, byte**, CudaResult>)Req("cuGetErrorString", 6000, "cuGetErrorString");

        cuDeviceGetCount = (delegate* unmanaged<int*, CudaResult>)Req("cuDeviceGetCount", 2000, "cuDeviceGetCount");
        cuDeviceGet = (delegate* unmanaged<int*, int, CudaResult>)Req("cuDeviceGet", 2000, "cuDeviceGet");
        cuDeviceGetName = (delegate* unmanaged<byte*, int, int, CudaResult>)Req("cuDeviceGetName", 2000, "cuDeviceGetName");
        cuDeviceGetAttribute = (delegate* unmanaged<int*, int, int, CudaResult>)Req("cuDeviceGetAttribute", 2000, "cuDeviceGetAttribute");
        cuDeviceTotalMem = (delegate* unmanaged<nuint*, int, CudaResult>)Req("cuDeviceTotalMem", 3020, "cuDeviceTotalMem_v2");

        cuDevicePrimaryCtxRetain = (delegate* unmanaged<nint*, int, CudaResult>)Req("cuDevicePrimaryCtxRetain", 7000, "cuDevicePrimaryCtxRetain");
        cuDevicePrimaryCtxRelease = (delegate* unmanaged<int, CudaResult>)Req("cuDevicePrimaryCtxRelease", 11000, "cuDevicePrimaryCtxRelease_v2");
        cuDevicePrimaryCtxGetState = (delegate* unmanaged<int, uint*, int*, CudaResult>)Req("cuDevicePrimaryCtxGetState", 7000, "cuDevicePrimaryCtxGetState");
        cuCtxSetCurrent = (delegate* unmanaged<nint, CudaResult>)Req("cuCtxSetCurrent", 4000, "cuCtxSetCurrent");
        cuCtxGetCurrent = (delegate* unmanaged<nint*, CudaResult>)Req("cuCtxGetCurrent", 4000, "cuCtxGetCurrent");
        cuCtxSynchronize = (delegate* unmanaged<CudaResult>)Req("cuCtxSynchronize", 2000, "cuCtxSynchronize");
        cuMemGetInfo = (delegate* unmanaged<nuint*, nuint*, CudaResult>)Req("cuMemGetInfo", 3020, "cuMemGetInfo_v2");

        cuMemAlloc = (delegate* unmanaged<ulong*, nuint, CudaResult>)Req("cuMemAlloc", 3020, "cuMemAlloc_v2");
        cuMemFree = (delegate* unmanaged<ulong, CudaResult>)Req("cuMemFree", 3020, "cuMemFree_v2");
        cuMemcpyHtoD = (delegate* unmanaged<ulong, void*, nuint, CudaResult>)Req("cuMemcpyHtoD", 3020, "cuMemcpyHtoD_v2");
        cuMemcpyDtoH = (delegate* unmanaged<void*, ulong, nuint, CudaResult>)Req("cuMemcpyDtoH", 3020, "cuMemcpyDtoH_v2");
        cuMemcpyDtoD = (delegate* unmanaged<ulong, ulong, nuint, CudaResult>)Req("cuMemcpyDtoD", 3020, "cuMemcpyDtoD_v2");
        cuMemcpyHtoDAsync = (delegate* unmanaged<ulong, void*, nuint, nint, CudaResult>)Req("cuMemcpyHtoDAsync", 3020, "cuMemcpyHtoDAsync_v2");
        cuMemcpyDtoHAsync = (delegate* unmanaged<void*, ulong, nuint, nint, CudaResult>)Req("cuMemcpyDtoHAsync", 3020, "cuMemcpyDtoHAsync_v2");
        cuMemcpyDtoDAsync = (delegate* unmanaged<ulong, ulong, nuint, nint, CudaResult>)Req("cuMemcpyDtoDAsync", 3020, "cuMemcpyDtoDAsync_v2");
        cuMemsetD8Async = (delegate* unmanaged<ulong, byte, nuint, nint, CudaResult>)Req("cuMemsetD8Async", 3020, "cuMemsetD8Async");
        cuMemsetD16Async = (delegate* unmanaged<ulong, ushort, nuint, nint, CudaResult>)Req("cuMemsetD16Async", 3020, "cuMemsetD16Async");
        cuMemsetD32Async = (delegate* unmanaged<ulong, uint, nuint, nint, CudaResult>)Req("cuMemsetD32Async", 3020, "cuMemsetD32Async");
        cuMemHostAlloc = (delegate* unmanaged<void**, nuint, uint, CudaResult>)Req("cuMemHostAlloc", 2020, "cuMemHostAlloc");
        cuMemFreeHost = (delegate* unmanaged<void*, CudaResult>)Req("cuMemFreeHost", 2000, "cuMemFreeHost");

        cuStreamCreate = (delegate* unmanaged<nint*, uint, CudaResult>)Req("cuStreamCreate", 2000, "cuStreamCreate");
        cuStreamDestroy = (delegate* unmanaged<nint, CudaResult>)Req("cuStreamDestroy", 4000, "cuStreamDestroy_v2");
        cuStreamSynchronize = (delegate* unmanaged<nint, CudaResult>)Req("cuStreamSynchronize", 2000, "cuStreamSynchronize");
        cuStreamQuery = (delegate* unmanaged<nint, CudaResult>)Req("cuStreamQuery", 2000, "cuStreamQuery");
        cuStreamWaitEvent = (delegate* unmanaged<nint, nint, uint, CudaResult>)Req("cuStreamWaitEvent", 3020, "cuStreamWaitEvent");
        cuEventCreate = (delegate* unmanaged<nint*, uint, CudaResult>)Req("cuEventCreate", 2000, "cuEventCreate");
        cuEventDestroy = (delegate* unmanaged<nint, CudaResult>)Req("cuEventDestroy", 4000, "cuEventDestroy_v2");
        cuEventRecord = (delegate* unmanaged<nint, nint, CudaResult>)Req("cuEventRecord", 2000, "cuEventRecord");
        cuEventSynchronize = (delegate* unmanaged<nint, CudaResult>)Req("cuEventSynchronize", 2000, "cuEventSynchronize");
        cuEventQuery = (delegate* unmanaged<nint, CudaResult>)Req("cuEventQuery", 2000, "cuEventQuery");

        // cuEventElapsedTime_v2 (12.8) and the original have the same signature; take the newest
        // the driver offers.
        var elapsed = r.Resolve("cuEventElapsedTime", 12080, "cuEventElapsedTime_v2");
        if (elapsed == 0)
        {
            elapsed = Req("cuEventElapsedTime", 2000, "cuEventElapsedTime");
        }

        cuEventElapsedTime = (delegate* unmanaged<float*, nint, nint, CudaResult>)elapsed;

        cuModuleLoadDataEx = (delegate* unmanaged<nint*, void*, uint, int*, void**, CudaResult>)Req("cuModuleLoadDataEx", 2010, "cuModuleLoadDataEx");
        cuModuleUnload = (delegate* unmanaged<nint, CudaResult>)Req("cuModuleUnload", 2000, "cuModuleUnload");
        cuModuleGetFunction = (delegate* unmanaged<nint*, nint, byte*, CudaResult>)Req("cuModuleGetFunction", 2000, "cuModuleGetFunction");
        cuModuleGetGlobal = (delegate* unmanaged<ulong*, nuint*, nint, byte*, CudaResult>)Req("cuModuleGetGlobal", 3020, "cuModuleGetGlobal_v2");
        cuFuncGetAttribute = (delegate* unmanaged<int*, int, nint, CudaResult>)Req("cuFuncGetAttribute", 2020, "cuFuncGetAttribute");
        cuFuncSetAttribute = (delegate* unmanaged<nint, int, int, CudaResult>)Req("cuFuncSetAttribute", 9000, "cuFuncSetAttribute");
        cuLaunchKernelEx = (delegate* unmanaged<CuLaunchConfig*, nint, void**, void**, CudaResult>)Req("cuLaunchKernelEx", 11060, "cuLaunchKernelEx");
        cuFuncGetParamInfo = (delegate* unmanaged<nint, nuint, nuint*, nuint*, CudaResult>)r.Resolve("cuFuncGetParamInfo", 12040, "cuFuncGetParamInfo");

        cuStreamBeginCapture = (delegate* unmanaged<nint, int, CudaResult>)Req("cuStreamBeginCapture", 10010, "cuStreamBeginCapture_v2");
        cuStreamEndCapture = (delegate* unmanaged<nint, nint*, CudaResult>)Req("cuStreamEndCapture", 10000, "cuStreamEndCapture");
        cuStreamIsCapturing = (delegate* unmanaged<nint, int*, CudaResult>)Req("cuStreamIsCapturing", 10000, "cuStreamIsCapturing");
        cuGraphInstantiateWithFlags = (delegate* unmanaged<nint*, nint, ulong, CudaResult>)Req("cuGraphInstantiateWithFlags", 11040, "cuGraphInstantiateWithFlags");
        cuGraphLaunch = (delegate* unmanaged<nint, nint, CudaResult>)Req("cuGraphLaunch", 10000, "cuGraphLaunch");
        cuGraphDestroy = (delegate* unmanaged<nint, CudaResult>)Req("cuGraphDestroy", 10000, "cuGraphDestroy");
        cuGraphExecDestroy = (delegate* unmanaged<nint, CudaResult>)Req("cuGraphExecDestroy", 10000, "cuGraphExecDestroy");

        cuTensorMapEncodeTiled = (delegate* unmanaged<TensorMap*, int, uint, void*, ulong*, ulong*, uint*, uint*, int, int, int, int, CudaResult>)
            r.Resolve("cuTensorMapEncodeTiled", 12000, "cuTensorMapEncodeTiled");

        return missing;
    }

    /// <summary>Formats a CUDA version number (1000·major + 10·minor) as "major.minor".</summary>
    public static string FormatVersion(int version) => $"{version / 1000}.{version % 1000 / 10}";
}
