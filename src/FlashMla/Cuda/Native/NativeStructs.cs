using System.Runtime.InteropServices;

namespace FlashMla.Cuda.Native;

/// <summary>
/// <c>CUlaunchConfig</c> (cuda.h, CUDA ≥ 11.8): seven <c>unsigned int</c>s, then the stream handle,
/// the attribute array pointer and the attribute count. Sequential layout gives the C offsets on
/// 64-bit targets: hStream at 32, attrs at 40, numAttrs at 48, size 56.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CuLaunchConfig
{
    public uint GridDimX;
    public uint GridDimY;
    public uint GridDimZ;
    public uint BlockDimX;
    public uint BlockDimY;
    public uint BlockDimZ;
    public uint SharedMemBytes;
    public nint Stream;
    public CuLaunchAttribute* Attrs;
    public uint NumAttrs;
}

/// <summary>
/// <c>CUlaunchAttribute</c>: a 4-byte <c>CUlaunchAttributeID</c>, 4 bytes of padding
/// (<c>char pad[8 - sizeof(CUlaunchAttributeID)]</c>), then the 64-byte
/// <c>CUlaunchAttributeValue</c> union (8-byte aligned). Size 72.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 72)]
internal struct CuLaunchAttribute
{
    /// <summary><c>CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION</c>; value is <c>struct { unsigned x, y, z; } clusterDim</c>.</summary>
    public const int ClusterDimension = 4;

    /// <summary><c>CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION</c>; value is <c>int programmaticStreamSerializationAllowed</c>.</summary>
    public const int ProgrammaticStreamSerialization = 6;

    [FieldOffset(0)]
    public int Id;

    [FieldOffset(8)]
    public uint Value0;

    [FieldOffset(12)]
    public uint Value1;

    [FieldOffset(16)]
    public uint Value2;
}

/// <summary>Enum values of the driver API used by the binding (cuda.h, CUDA 12.x/13.0).</summary>
internal static class CuConstants
{
    // CUjit_option
    public const int JitInfoLogBuffer = 3;
    public const int JitInfoLogBufferSizeBytes = 4;
    public const int JitErrorLogBuffer = 5;
    public const int JitErrorLogBufferSizeBytes = 6;
    public const int JitLogVerbose = 12;

    // CUfunction_attribute
    public const int FuncMaxThreadsPerBlock = 0;
    public const int FuncSharedSizeBytes = 1;
    public const int FuncConstSizeBytes = 2;
    public const int FuncLocalSizeBytes = 3;
    public const int FuncNumRegs = 4;
    public const int FuncPtxVersion = 5;
    public const int FuncBinaryVersion = 6;
    public const int FuncMaxDynamicSharedSizeBytes = 8;

    // CUstream_flags
    public const uint StreamDefault = 0;
    public const uint StreamNonBlocking = 1;

    // CUevent_flags
    public const uint EventDefault = 0;
    public const uint EventBlockingSync = 1;
    public const uint EventDisableTiming = 2;

    // CUdriverProcAddress_flags
    public const ulong GetProcAddressLegacyStream = 1;

    // CUdriverProcAddressQueryResult
    public const int ProcAddressSuccess = 0;
}
