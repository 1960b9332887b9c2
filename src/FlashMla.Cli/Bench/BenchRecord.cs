using System.Text.Json;
using FlashMla.Cli.Output;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Cli.Bench;

/// <summary>One benchmark result (one JSON record), keyed by the case's name.</summary>
internal sealed record BenchRecord
{
    /// <summary>The "impl" field of our records (the FlashMLA side writes "flashmla").</summary>
    public const string Impl = "flashmla.net";

    public required BenchCase Case { get; init; }
    public required string Backend { get; init; }
    public required string KernelPath { get; init; }

    /// <summary>Median decode time (split kernel + combine) per call, each call between two events: host launch cost included.</summary>
    public required double Ms { get; init; }

    /// <summary>Median time of the plan update (schedule), event-timed.</summary>
    public double? PlanMs { get; init; }

    /// <summary>The shared method's figure (see <see cref="BenchMethod"/>), µs per decode call; null with --no-graph.</summary>
    public double? GraphUs { get; init; }

    /// <summary>The fastest and slowest timed replay, per call (µs).</summary>
    public double? GraphUsMin { get; init; }
    public double? GraphUsMax { get; init; }

    /// <summary>
    /// One decode call per graph (one graph per rotation, launched in turn and timed one by one;
    /// median, µs): a call with nothing before it to overlap. K × this against K × <see cref="GraphUs"/> shows what
    /// chaining calls in one graph (programmatic dependent launch) saves.
    /// </summary>
    public double? SingleGraphUs { get; init; }

    /// <summary>How the case's decodes run: "merge-in-kernel" (the decode kernel merges split requests itself, <see cref="FlashMla.Mla.Cuda.KernelPathInfo.MergesInKernel"/>) or "combine-kernel", with "+pdl" when launched with programmatic dependent launch.</summary>
    public string? Launch { get; init; }

    public required int Rotations { get; init; }

    /// <summary>K: decode calls in the graph (0 with --no-graph).</summary>
    public int CallsPerGraph { get; init; }

    public int GraphReplays { get; init; }

    /// <summary>Timed iterations of <see cref="Ms"/> and <see cref="PlanMs"/>.</summary>
    public int Iterations { get; init; }

    public required double CopyGBps { get; init; }

    /// <summary>The SM clock read through NVML while the timed replays ran; null when NVML is unavailable.</summary>
    public int? SmClockMhz { get; init; }

    public required string Gpu { get; init; }
    public required string Commit { get; init; }

    public DecodeCaseSpec Spec => Case.Spec;
    public double MeanSeqLen => Case.MeanSeqLen;
    public double Flops => BenchFormulas.Flops(Spec, MeanSeqLen);
    public double Bytes => BenchFormulas.Bytes(Spec, MeanSeqLen);

    /// <summary>TFLOP/s and GB/s from <see cref="GraphUs"/>, as in the FlashMLA figures.</summary>
    public double? Tflops => GraphUs is { } us ? BenchFormulas.Tflops(Flops, us * 1e-3) : null;
    public double? GBps => GraphUs is { } us ? BenchFormulas.GBps(Bytes, us * 1e-3) : null;

    /// <summary>TFLOP/s and GB/s from <see cref="Ms"/>.</summary>
    public double MsTflops => BenchFormulas.Tflops(Flops, Ms);
    public double MsGBps => BenchFormulas.GBps(Bytes, Ms);

    /// <summary><see cref="GBps"/> as a share of the 1 GiB device-to-device copy.</summary>
    public double? CopyPercent => GBps is { } g && CopyGBps > 0 ? 100.0 * g / CopyGBps : null;

    public void Write(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        writer.WriteString("name", Case.Name);
        writer.WriteString("suite", Case.Suite);
        writer.WriteString("impl", Impl);
        writer.WriteNumber("b", Spec.Batch);
        writer.WriteNumber("s_q", Spec.QueryLength);
        writer.WriteNumber("h_q", Spec.QueryHeads);
        writer.WriteNumber("h_kv", Spec.KvHeads);
        writer.WriteNumber("s_k", Spec.SeqlenK);
        writer.WriteBoolean("varlen", Spec.Varlen);
        writer.WriteBoolean("causal", Spec.Causal);
        writer.WriteNumber("page_block_size", Spec.PageBlockSize);
        writer.WriteString("dtype", Spec.ElementType.ShortName());
        writer.Number("mean_s_k", MeanSeqLen);
        writer.NumberOrNull("graph_us", GraphUs);
        writer.NumberOrNull("gbps", GBps);
        writer.NumberOrNull("tflops", Tflops);
        writer.Number("ms", Ms);
        writer.Number("ms_gbps", MsGBps);
        writer.Number("ms_tflops", MsTflops);
        writer.NumberOrNull("plan_ms", PlanMs);
        writer.NumberOrNull("graph_us_min", GraphUsMin);
        writer.NumberOrNull("graph_us_max", GraphUsMax);
        writer.NumberOrNull("single_graph_us", SingleGraphUs);
        if (Launch is not null)
        {
            writer.WriteString("launch", Launch);
        }

        writer.WriteNumber("rotations", Rotations);
        writer.WriteNumber("calls_per_graph", CallsPerGraph);
        writer.WriteNumber("graph_replays", GraphReplays);
        writer.WriteNumber("iters", Iterations);
        writer.Number("flops", Flops);
        writer.Number("bytes", Bytes);
        writer.Number("copy_gbps", CopyGBps);
        writer.NumberOrNull("gbps_pct_of_copy", CopyPercent);
        writer.NumberOrNull("sm_clock_mhz", SmClockMhz);
        writer.WriteString("backend", Backend);
        writer.WriteString("kernel_path", KernelPath);
        writer.WriteString("gpu", Gpu);
        writer.WriteString("commit", Commit);
        writer.WriteNumber("seed", Spec.Seed);
        writer.WriteEndObject();
    }
}

/// <summary>
/// The first JSON record of a bench run: the machine, the driver, the SM clock at the start and
/// at the end, and the copy baseline. It has no "name", so tools that match cases by name skip it.
/// </summary>
internal sealed class BenchRunInfo
{
    public const string Method =
        "KV cache in R rotations (R copies >= 4x L2, R <= 64, R copies <= half the free memory), each with its own q and " +
        "shuffled block table; one CUDA graph of K = max(R, 8) decode calls, call i on rotation i mod R; 3 warm-up replays, " +
        "15 timed replays, each waited for; graph_us = median of (replay time / K); the plan is updated once, outside the graph";

    /// <summary>The timing method of the appends of <c>flashmla bench-append</c>.</summary>
    public const string AppendMethod =
        "sources, pages and slot mappings in R rotations (R copies >= 4x L2, R <= 64, R copies <= half the free memory), each " +
        "rotation's tokens on distinct random slots of its own pages; one CUDA graph of K = max(R, 8) appends, call i on rotation " +
        "i mod R; 3 warm-up replays, 15 timed replays, each waited for; graph_us = median of (replay time / K); " +
        "bytes = 2 * n * h_kv * 576 * e + 4 * n (rows read and written, slots read)";

    /// <summary>What was timed and how: <see cref="Method"/> (decode) or <see cref="AppendMethod"/>.</summary>
    public string MethodText { get; init; } = Method;

    public required string Gpu { get; init; }
    public required string PciBusId { get; init; }
    public required string ComputeCapability { get; init; }
    public required int Multiprocessors { get; init; }
    public required long L2Bytes { get; init; }
    public required string CudaDriverVersion { get; init; }
    public required string Commit { get; init; }
    public required DateTimeOffset StartedUtc { get; init; }

    /// <summary>From NVML; null when NVML is unavailable (then <see cref="ClockNote"/> says why).</summary>
    public string? DriverVersion { get; init; }
    public int? SmClockMhzStart { get; init; }
    public int? SmClockMaxMhz { get; init; }
    public int? MemClockMhz { get; init; }

    /// <summary>The SM clock after the last finished case; updated as the run goes.</summary>
    public int? SmClockMhzEnd { get; set; }

    /// <summary>Why a clock or the driver version is missing, or how the NVML device was matched when that is worth saying.</summary>
    public string? ClockNote { get; init; }

    public double CopyGBps { get; set; } = double.NaN;
    public int Cases { get; init; }

    public void Write(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        writer.WriteString("kind", "run");
        writer.WriteString("impl", BenchRecord.Impl);
        writer.WriteString("gpu", Gpu);
        writer.WriteString("pci_bus_id", PciBusId);
        writer.WriteString("compute_capability", ComputeCapability);
        writer.WriteNumber("sms", Multiprocessors);
        writer.WriteNumber("l2_bytes", L2Bytes);
        StringOrNull(writer, "driver_version", DriverVersion);
        writer.WriteString("cuda_driver_version", CudaDriverVersion);
        writer.NumberOrNull("sm_clock_mhz_start", SmClockMhzStart);
        writer.NumberOrNull("sm_clock_mhz_end", SmClockMhzEnd);
        writer.NumberOrNull("sm_clock_max_mhz", SmClockMaxMhz);
        writer.NumberOrNull("mem_clock_mhz", MemClockMhz);
        StringOrNull(writer, "clock_note", ClockNote);
        writer.Number("copy_gbps", CopyGBps);
        writer.WriteNumber("cases", Cases);
        writer.WriteString("method", MethodText);
        writer.WriteString("commit", Commit);
        writer.WriteString("started_utc", StartedUtc.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture));
        writer.WriteEndObject();
    }

    private static void StringOrNull(Utf8JsonWriter writer, string name, string? value)
    {
        if (value is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteString(name, value);
        }
    }
}
