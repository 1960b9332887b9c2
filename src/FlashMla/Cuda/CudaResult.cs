namespace FlashMla.Cuda;

/// <summary>
/// A <c>CUresult</c> code of the CUDA driver API. Only the codes this library names are listed;
/// any other value the driver returns is carried as is (its name comes from <c>cuGetErrorName</c>).
/// </summary>
/// <remarks>Values from the driver API's <c>cudaError_enum</c> (cuda.h, CUDA 12.x/13.0).</remarks>
public enum CudaResult
{
    /// <summary>CUDA_SUCCESS.</summary>
    Success = 0,

    /// <summary>CUDA_ERROR_INVALID_VALUE.</summary>
    InvalidValue = 1,

    /// <summary>CUDA_ERROR_OUT_OF_MEMORY.</summary>
    OutOfMemory = 2,

    /// <summary>CUDA_ERROR_NOT_INITIALIZED.</summary>
    NotInitialized = 3,

    /// <summary>CUDA_ERROR_DEINITIALIZED (the driver is shutting down).</summary>
    Deinitialized = 4,

    /// <summary>CUDA_ERROR_STUB_LIBRARY (the loaded libcuda is the toolkit's stub, not a driver).</summary>
    StubLibrary = 34,

    /// <summary>CUDA_ERROR_DEVICE_UNAVAILABLE.</summary>
    DeviceUnavailable = 46,

    /// <summary>CUDA_ERROR_NO_DEVICE.</summary>
    NoDevice = 100,

    /// <summary>CUDA_ERROR_INVALID_DEVICE.</summary>
    InvalidDevice = 101,

    /// <summary>CUDA_ERROR_INVALID_IMAGE.</summary>
    InvalidImage = 200,

    /// <summary>CUDA_ERROR_INVALID_CONTEXT.</summary>
    InvalidContext = 201,

    /// <summary>CUDA_ERROR_NO_BINARY_FOR_GPU.</summary>
    NoBinaryForGpu = 209,

    /// <summary>CUDA_ERROR_INVALID_PTX (PTX JIT compilation failed).</summary>
    InvalidPtx = 218,

    /// <summary>CUDA_ERROR_UNSUPPORTED_PTX_VERSION.</summary>
    UnsupportedPtxVersion = 222,

    /// <summary>CUDA_ERROR_INVALID_HANDLE.</summary>
    InvalidHandle = 400,

    /// <summary>CUDA_ERROR_NOT_FOUND.</summary>
    NotFound = 500,

    /// <summary>CUDA_ERROR_NOT_READY (asynchronous work not finished; not an error).</summary>
    NotReady = 600,

    /// <summary>CUDA_ERROR_ILLEGAL_ADDRESS.</summary>
    IllegalAddress = 700,

    /// <summary>CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES.</summary>
    LaunchOutOfResources = 701,

    /// <summary>CUDA_ERROR_MISALIGNED_ADDRESS.</summary>
    MisalignedAddress = 716,

    /// <summary>CUDA_ERROR_LAUNCH_FAILED.</summary>
    LaunchFailed = 719,

    /// <summary>CUDA_ERROR_NOT_PERMITTED.</summary>
    NotPermitted = 800,

    /// <summary>CUDA_ERROR_NOT_SUPPORTED.</summary>
    NotSupported = 801,

    /// <summary>CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED.</summary>
    StreamCaptureUnsupported = 900,

    /// <summary>CUDA_ERROR_STREAM_CAPTURE_INVALIDATED.</summary>
    StreamCaptureInvalidated = 901,

    /// <summary>CUDA_ERROR_STREAM_CAPTURE_IMPLICIT (the legacy stream was used during a capture).</summary>
    StreamCaptureImplicit = 906,

    /// <summary>CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD.</summary>
    StreamCaptureWrongThread = 908,

    /// <summary>CUDA_ERROR_INVALID_CLUSTER_SIZE.</summary>
    InvalidClusterSize = 912,

    /// <summary>CUDA_ERROR_UNKNOWN.</summary>
    Unknown = 999,
}
