using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Cli.Bench;

/// <summary>FlashMLA's dense-decode FLOP and byte counts (causal masking is not subtracted).</summary>
internal static class BenchFormulas
{
    /// <summary>Bytes per element of q, k_cache and the output (<see cref="ElementType"/>'s size).</summary>
    public static int ElementSize(ElementType dtype) => dtype.SizeInBytes;

    /// <summary>FLOPs = 2·b·s_q·h_q·mean_seqlen·(d + d_v).</summary>
    public static double Flops(DecodeCaseSpec spec, double meanSeqLen)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return 2.0 * spec.Batch * spec.QueryLength * spec.QueryHeads * meanSeqLen * (spec.HeadDim + DecodeCaseSpec.HeadDimV);
    }

    /// <summary>bytes = b·(s_q·h_q·d·e + mean_seqlen·h_kv·d·e + s_q·h_q·d_v·e), e the element size of the dtype.</summary>
    public static double Bytes(DecodeCaseSpec spec, double meanSeqLen)
    {
        ArgumentNullException.ThrowIfNull(spec);
        double elementSize = ElementSize(spec.ElementType);
        return spec.Batch * (
            (spec.QueryLength * spec.QueryHeads * spec.HeadDim * elementSize) +
            (meanSeqLen * spec.KvHeads * spec.HeadDim * elementSize) +
            (spec.QueryLength * spec.QueryHeads * DecodeCaseSpec.HeadDimV * elementSize));
    }

    public static double Tflops(double flops, double ms) => ms > 0 ? flops / (ms * 1e-3) / 1e12 : double.NaN;

    public static double GBps(double bytes, double ms) => ms > 0 ? bytes / (ms * 1e-3) / 1e9 : double.NaN;

    public static double Median(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count == 0)
        {
            return double.NaN;
        }
        var sorted = values.Order().ToArray();
        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
