using Microsoft.Extensions.Logging;

namespace FlashMla.Cuda;

/// <summary>The binding's log messages (event ids 100–199; the table is in docs/architecture.md, "Observability").</summary>
internal static partial class CudaLog
{
    [LoggerMessage(EventId = 100, EventName = "DriverLoaded", Level = LogLevel.Information,
        Message = "CUDA driver loaded from {Library}: CUDA {DriverVersion}, {DeviceCount} device(s), entry points resolved through {Resolution}")]
    public static partial void DriverLoaded(ILogger logger, string library, string driverVersion, int deviceCount, string resolution);

    [LoggerMessage(EventId = 101, EventName = "DriverLoadFailed", Level = LogLevel.Warning,
        Message = "The CUDA driver could not be used: {Reason}")]
    public static partial void DriverLoadFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 102, EventName = "ContextRetained", Level = LogLevel.Debug,
        Message = "Retained the primary context of {Device}")]
    public static partial void ContextRetained(ILogger logger, string device);
}
