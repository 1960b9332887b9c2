using System.Diagnostics.Metrics;
using System.Reflection;

namespace FlashMla.Mla;

/// <summary>
/// The library's metrics: one <see cref="System.Diagnostics.Metrics.Meter"/> named
/// <see cref="MeterName"/> with two counters, decode calls and rejected inputs. Listen with a
/// <see cref="MeterListener"/>, OpenTelemetry's <c>AddMeter("FlashMla")</c> or
/// <c>dotnet-counters monitor --counters FlashMla</c>.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="DecodeCallsName"/> counts decodes that ran (CPU) or were enqueued (CUDA), tagged
/// <see cref="BackendTag"/> (<see cref="CpuBackend"/> or <see cref="CudaBackend"/>) and
/// <see cref="KernelPathTag"/> (the CUDA kernel path, e.g. "mma.sync"; <see cref="CpuKernelPath"/> on the CPU).
/// </para>
/// <para>
/// <see cref="InputErrorsName"/> counts calls rejected for their input: an
/// <see cref="ArgumentException"/> thrown by a decoder's <c>CreatePlan</c>, <c>UpdatePlan</c> or
/// <c>Decode</c> before anything ran, or an <see cref="MlaInputException"/> raised at the CUDA
/// synchronization point for a length or block id the kernels rejected. Tags: <see cref="BackendTag"/>,
/// <see cref="ParameterTag"/> (the exception's parameter name; <c>cacheSeqlens</c> or
/// <c>blockTable</c> for a kernel's finding) and <see cref="ErrorTypeTag"/> (the exception's type name).
/// </para>
/// </remarks>
public static class MlaMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "FlashMla";

    /// <summary>The decode-call counter's name (unit <c>{call}</c>).</summary>
    public const string DecodeCallsName = "flashmla.decode.calls";

    /// <summary>The input-error counter's name (unit <c>{error}</c>).</summary>
    public const string InputErrorsName = "flashmla.decode.input_errors";

    /// <summary>Tag: the backend, <see cref="CpuBackend"/> or <see cref="CudaBackend"/>.</summary>
    public const string BackendTag = "flashmla.backend";

    /// <summary>Tag of decode calls: the kernel path that ran the call.</summary>
    public const string KernelPathTag = "flashmla.kernel_path";

    /// <summary>Tag of input errors: the parameter that was rejected.</summary>
    public const string ParameterTag = "flashmla.parameter";

    /// <summary>Tag of input errors: the exception's type name.</summary>
    public const string ErrorTypeTag = "error.type";

    /// <summary>The <see cref="BackendTag"/> value of the CPU decoder.</summary>
    public const string CpuBackend = "cpu";

    /// <summary>The <see cref="BackendTag"/> value of the CUDA decoder.</summary>
    public const string CudaBackend = "cuda";

    /// <summary>The <see cref="KernelPathTag"/> value of the CPU decoder.</summary>
    public const string CpuKernelPath = "cpu";

    private static readonly Meter s_meter = new(
        MeterName,
        typeof(MlaMetrics).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion);

    private static readonly Counter<long> s_decodeCalls =
        s_meter.CreateCounter<long>(DecodeCallsName, "{call}", "Decode calls that ran (CPU) or were enqueued (CUDA).");

    private static readonly Counter<long> s_inputErrors =
        s_meter.CreateCounter<long>(InputErrorsName, "{error}", "Decoder calls rejected for their input.");

    /// <summary>Counts one decode call.</summary>
    internal static void RecordDecode(string backend, string kernelPath)
    {
        if (s_decodeCalls.Enabled)
        {
            s_decodeCalls.Add(1, new KeyValuePair<string, object?>(BackendTag, backend), new KeyValuePair<string, object?>(KernelPathTag, kernelPath));
        }
    }

    /// <summary>Counts one rejected input.</summary>
    internal static void RecordInputError(string backend, string parameter, Exception error)
    {
        if (s_inputErrors.Enabled)
        {
            s_inputErrors.Add(
                1,
                new KeyValuePair<string, object?>(BackendTag, backend),
                new KeyValuePair<string, object?>(ParameterTag, parameter),
                new KeyValuePair<string, object?>(ErrorTypeTag, error.GetType().Name));
        }
    }
}
