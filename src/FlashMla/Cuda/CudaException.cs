namespace FlashMla.Cuda;

/// <summary>
/// A CUDA driver call returned an error. Carries the <c>CUresult</c> code, its name
/// (<c>cuGetErrorName</c>), its description (<c>cuGetErrorString</c>) and the call that failed.
/// </summary>
public class CudaException : Exception
{
    /// <summary>Creates an exception without a driver result (for serializers and tests).</summary>
    public CudaException()
        : this(CudaResult.Unknown, "CUDA_ERROR_UNKNOWN", "unknown error", "(unknown call)")
    {
    }

    /// <summary>Creates an exception with a message only.</summary>
    /// <param name="message">What went wrong.</param>
    public CudaException(string message)
        : base(message)
    {
        Result = CudaResult.Unknown;
        ErrorName = "CUDA_ERROR_UNKNOWN";
        ErrorString = message;
        Call = "(unknown call)";
    }

    /// <summary>Creates an exception with a message and an inner exception.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public CudaException(string message, Exception innerException)
        : base(message, innerException)
    {
        Result = CudaResult.Unknown;
        ErrorName = "CUDA_ERROR_UNKNOWN";
        ErrorString = message;
        Call = "(unknown call)";
    }

    /// <summary>Creates an exception for a failed driver call.</summary>
    /// <param name="result">The code the driver returned.</param>
    /// <param name="errorName">The code's name, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</param>
    /// <param name="errorString">The driver's description of the code.</param>
    /// <param name="call">The call that failed.</param>
    /// <param name="detail">Extra text appended to the message (a JIT error log, say), or null.</param>
    public CudaException(CudaResult result, string errorName, string errorString, string call, string? detail = null)
        : base(FormatMessage(result, errorName, errorString, call, detail))
    {
        Result = result;
        ErrorName = errorName;
        ErrorString = errorString;
        Call = call;
        Detail = detail;
    }

    /// <summary>The <c>CUresult</c> the driver returned.</summary>
    public CudaResult Result { get; }

    /// <summary>The numeric <c>CUresult</c> value.</summary>
    public int ResultCode => (int)Result;

    /// <summary>The code's name from <c>cuGetErrorName</c>, e.g. <c>CUDA_ERROR_INVALID_VALUE</c>.</summary>
    public string ErrorName { get; }

    /// <summary>The code's description from <c>cuGetErrorString</c>.</summary>
    public string ErrorString { get; }

    /// <summary>The driver call that failed (its C# call text).</summary>
    public string Call { get; }

    /// <summary>Extra diagnostic text (for example the PTX JIT error log), or null.</summary>
    public string? Detail { get; }

    private static string FormatMessage(CudaResult result, string errorName, string errorString, string call, string? detail)
    {
        var message = $"{call} failed: {errorName} ({(int)result}): {errorString}";
        return string.IsNullOrEmpty(detail) ? message : message + Environment.NewLine + detail;
    }
}
