using System.Runtime.InteropServices;
using System.Text;

namespace FlashMla.Cuda.Native;

/// <summary>
/// Looks driver entry points up: first through <c>cuGetProcAddress_v2</c> for an explicit ABI
/// version, then by export name in the loaded library.
/// </summary>
internal sealed unsafe class SymbolResolver
{
    private readonly nint _library;

    // CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int cudaVersion,
    //                              cuuint64_t flags, CUdriverProcAddressQueryResult* symbolStatus)
    private readonly delegate* unmanaged<byte*, void**, int, ulong, int*, CudaResult> _getProcAddress;

    public SymbolResolver(nint library)
    {
        _library = library;
        if (NativeLibrary.TryGetExport(library, "cuGetProcAddress_v2", out var gpa))
        {
            _getProcAddress = (delegate* unmanaged<byte*, void**, int, ulong, int*, CudaResult>)gpa;
        }
    }

    /// <summary>True when <c>cuGetProcAddress_v2</c> was found (driver for CUDA ≥ 12.0).</summary>
    public bool UsesGetProcAddress => _getProcAddress != null;

    /// <summary>Looks up one export by name; 0 when absent.</summary>
    public nint Export(string name) => NativeLibrary.TryGetExport(_library, name, out var p) ? p : 0;

    /// <summary>
    /// Resolves <paramref name="name"/> at ABI <paramref name="version"/>, falling back to the
    /// given export names. Returns 0 when none is found.
    /// </summary>
    public nint Resolve(string name, int version, params string[] exports)
    {
        if (_getProcAddress != null)
        {
            var bytes = Encoding.ASCII.GetBytes(name + "\0");
            void* pfn = null;
            var status = -1;
            fixed (byte* s = bytes)
            {
                var r = _getProcAddress(s, &pfn, version, CuConstants.GetProcAddressLegacyStream, &status);
                if (r == CudaResult.Success && status == CuConstants.ProcAddressSuccess && pfn != null)
                {
                    return (nint)pfn;
                }
            }
        }

        foreach (var export in exports)
        {
            var p = Export(export);
            if (p != 0)
            {
                return p;
            }
        }

        return 0;
    }
}
