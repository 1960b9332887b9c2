using Microsoft.Extensions.Logging;

namespace FlashMla.Kernels;

/// <summary>The kernel library's log messages (event ids 200–299; the table is in docs/architecture.md, "Observability").</summary>
internal static partial class KernelsLog
{
    [LoggerMessage(EventId = 200, EventName = "ModuleLoaded", Level = LogLevel.Information,
        Message = "Module {Target}/{Module} loaded from {Source} in {ElapsedMs:F1} ms (the driver's JIT compilation, or its JIT cache)")]
    public static partial void ModuleLoaded(ILogger logger, string target, string module, string source, double elapsedMs);

    [LoggerMessage(EventId = 201, EventName = "ModuleLoadFailed", Level = LogLevel.Error,
        Message = "Module {Target}/{Module} from {Source} failed to load after {ElapsedMs:F1} ms: {Reason}")]
    public static partial void ModuleLoadFailed(ILogger logger, string target, string module, string source, double elapsedMs, string reason);

    [LoggerMessage(EventId = 202, EventName = "PtxOverrideActive", Level = LogLevel.Warning,
        Message = "Kernel override active: modules found under {Directory} replace the embedded PTX ({DirectoryVariable} with {AllowVariable}=1)")]
    public static partial void PtxOverrideActive(ILogger logger, string directory, string directoryVariable, string allowVariable);

    [LoggerMessage(EventId = 203, EventName = "PtxOverrideIgnored", Level = LogLevel.Warning,
        Message = "{DirectoryVariable}={Directory} is ignored and the embedded PTX is used: set {AllowVariable}=1 to load kernels from that folder")]
    public static partial void PtxOverrideIgnored(ILogger logger, string directoryVariable, string directory, string allowVariable);

    [LoggerMessage(EventId = 204, EventName = "PtxOverrideModule", Level = LogLevel.Warning,
        Message = "Module {Target}/{Module} is read from {Path}, not from the embedded PTX")]
    public static partial void PtxOverrideModule(ILogger logger, string target, string module, string path);
}
