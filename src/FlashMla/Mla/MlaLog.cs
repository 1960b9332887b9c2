using Microsoft.Extensions.Logging;

namespace FlashMla.Mla;

/// <summary>The decoders' log messages (event ids 300–399; the table is in docs/architecture.md, "Observability").</summary>
internal static partial class MlaLog
{
    [LoggerMessage(EventId = 300, EventName = "KernelPathChosen", Level = LogLevel.Debug,
        Message = "Kernel path {KernelPath} takes decodes of {Problem}: {Kernel}")]
    public static partial void KernelPathChosen(ILogger logger, string kernelPath, string problem, string kernel);

    [LoggerMessage(EventId = 301, EventName = "KernelPathLogLimit", Level = LogLevel.Debug,
        Message = "Kernel path choices are logged for the first {Limit} problem shapes only; later shapes are not logged")]
    public static partial void KernelPathLogLimit(ILogger logger, int limit);

    [LoggerMessage(EventId = 302, EventName = "InputRejected", Level = LogLevel.Warning,
        Message = "The {Backend} decoder rejected parameter {Parameter}: {Reason}")]
    public static partial void InputRejected(ILogger logger, string backend, string parameter, string reason);

    [LoggerMessage(EventId = 303, EventName = "DeviceInputRejected", Level = LogLevel.Warning,
        Message = "The {Backend} kernels rejected request {RequestIndex} ({Error}): {Reason}")]
    public static partial void DeviceInputRejected(ILogger logger, string backend, int requestIndex, MlaInputError error, string reason);
}

/// <summary>Logging and counting of rejected inputs, for both decoders (used from exception filters: it returns false).</summary>
internal static class MlaRejections
{
    /// <summary>Logs and counts <paramref name="error"/> when it is an input error; returns false so that a filter lets it propagate unchanged.</summary>
    /// <param name="logger">The decoder's logger.</param>
    /// <param name="backend"><see cref="MlaMetrics.CpuBackend"/> or <see cref="MlaMetrics.CudaBackend"/>.</param>
    /// <param name="error">The exception on its way to the caller.</param>
    /// <returns>False.</returns>
    public static bool Report(ILogger logger, string backend, Exception error)
    {
        switch (error)
        {
            case MlaInputException device:
                var parameter = device.Reason == MlaInputError.BlockIdOutOfRange ? "blockTable" : "cacheSeqlens";
                MlaLog.DeviceInputRejected(logger, backend, device.RequestIndex, device.Reason, device.Message);
                MlaMetrics.RecordInputError(backend, parameter, device);
                break;
            case ArgumentException argument:
                var name = argument.ParamName ?? "(none)";
                MlaLog.InputRejected(logger, backend, name, argument.Message);
                MlaMetrics.RecordInputError(backend, name, argument);
                break;
        }

        return false;
    }
}
