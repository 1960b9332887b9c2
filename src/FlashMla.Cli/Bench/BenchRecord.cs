using System.Text.Json;
using FlashMla.Cli.Inputs;
using FlashMla.Cli.Output;

namespace FlashMla.Cli.Bench;

/// <summary>One benchmark result (one JSON record).</summary>
internal sealed record BenchRecord
{
    public required DecodeCaseSpec Spec { get; init; }
    public required string Backend { get; init; }
    public required string KernelPath { get; init; }
    public required double MeanSeqLen { get; init; }
    /// <summary>Median decode time (split kernel + combine) over the timed iterations, event-timed.</summary>
    public required double Ms { get; init; }
    /// <summary>Median time per decode under CUDA-graph replay; null when graphs are unavailable.</summary>
    public double? GraphMs { get; init; }
    /// <summary>Median time of the plan update (schedule), event-timed.</summary>
    public double? PlanMs { get; init; }
    public required double Tflops { get; init; }
    public required double GBps { get; init; }
    public double? GraphTflops { get; init; }
    public double? GraphGBps { get; init; }
    public required double CopyGBps { get; init; }
    public required string Gpu { get; init; }
    public required string Commit { get; init; }
    public int Iterations { get; init; }
    public int Rotations { get; init; }

    public double CopyPercent => CopyGBps > 0 ? 100.0 * GBps / CopyGBps : double.NaN;

    public void Write(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        writer.WriteNumber("b", Spec.Batch);
        writer.WriteNumber("s_q", Spec.SeqQ);
        writer.WriteNumber("h_q", Spec.HeadsQ);
        writer.WriteNumber("h_kv", Spec.HeadsKv);
        writer.WriteNumber("s_k", Spec.SeqLenK);
        writer.WriteBoolean("varlen", Spec.Varlen);
        writer.WriteBoolean("causal", Spec.Causal);
        writer.WriteNumber("page_block_size", Spec.PageSize);
        writer.WriteString("dtype", Spec.Dtype.ToName());
        writer.WriteString("backend", Backend);
        writer.WriteString("kernel_path", KernelPath);
        writer.Number("ms", Ms);
        writer.NumberOrNull("graph_ms", GraphMs);
        writer.Number("tflops", Tflops);
        writer.Number("gbps", GBps);
        writer.Number("copy_gbps", CopyGBps);
        writer.WriteString("gpu", Gpu);
        writer.WriteString("commit", Commit);
        writer.Number("mean_s_k", MeanSeqLen);
        writer.NumberOrNull("plan_ms", PlanMs);
        writer.NumberOrNull("graph_tflops", GraphTflops);
        writer.NumberOrNull("graph_gbps", GraphGBps);
        writer.Number("gbps_pct_of_copy", CopyPercent);
        writer.WriteNumber("iters", Iterations);
        writer.WriteNumber("rotations", Rotations);
        writer.WriteNumber("seed", Spec.Seed);
        writer.WriteEndObject();
    }
}
