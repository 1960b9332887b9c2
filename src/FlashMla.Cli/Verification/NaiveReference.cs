using System.Numerics.Tensors;
using FlashMla.Cli.Inputs;

namespace FlashMla.Cli.Verification;

/// <summary>
/// A direct float64 implementation of the decode semantics (docs/architecture.md), independent of
/// the library's decoders: per request and query row, softmax over the visible keys, natural-log LSE;
/// rows that see no key give output 0 and lse +inf.
/// </summary>
internal static class NaiveReference
{
    public static (double[] Output, double[] Lse) Compute(DecodeInputs inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var spec = inputs.Spec;
        int b = spec.Batch, sq = spec.SeqQ, hq = spec.HeadsQ, hkv = spec.HeadsKv, d = spec.HeadDim;
        const int dv = DecodeCaseSpec.HeadDimV;
        var group = hq / hkv;
        var output = new double[inputs.OutputLength];
        var lse = new double[inputs.LseLength];
        var scale = spec.SoftmaxScale;

        Parallel.For(0, b * hkv, job =>
        {
            var r = job / hkv;
            var kvh = job % hkv;
            var len = inputs.Seqlens[r];
            // Gather this request's keys of KV head kvh as float64 rows.
            var keys = new double[(long)len * d];
            for (var t = 0; t < len; t++)
            {
                var block = inputs.BlockTable[(r * inputs.MaxBlocksPerSeq) + (t / spec.PageSize)];
                var offset = ((((long)block * spec.PageSize) + (t % spec.PageSize)) * hkv + kvh) * d;
                for (var c = 0; c < d; c++)
                {
                    keys[((long)t * d) + c] = ElementBits.ToFloat(spec.Dtype, inputs.KCache[offset + c]);
                }
            }

            var query = new double[d];
            var scores = new double[Math.Max(len, 1)];
            var acc = new double[dv];
            for (var s = 0; s < sq; s++)
            {
                var visible = spec.Causal ? Math.Clamp(len - sq + s + 1, 0, len) : len;
                for (var g = 0; g < group; g++)
                {
                    var h = (kvh * group) + g;
                    var qOffset = ((((long)r * sq) + s) * hq + h) * d;
                    for (var c = 0; c < d; c++)
                    {
                        query[c] = ElementBits.ToFloat(spec.Dtype, inputs.Q[qOffset + c]);
                    }
                    var outOffset = ((((long)r * sq) + s) * hq + h) * dv;
                    var lseIndex = (((long)r * hq) + h) * sq + s;
                    if (visible == 0)
                    {
                        lse[lseIndex] = double.PositiveInfinity;
                        continue; // output stays 0
                    }

                    var max = double.NegativeInfinity;
                    for (var t = 0; t < visible; t++)
                    {
                        var score = TensorPrimitives.Dot<double>(query, keys.AsSpan(t * d, d)) * scale;
                        scores[t] = score;
                        max = Math.Max(max, score);
                    }
                    Array.Clear(acc);
                    double sum = 0;
                    for (var t = 0; t < visible; t++)
                    {
                        var p = Math.Exp(scores[t] - max);
                        sum += p;
                        TensorPrimitives.MultiplyAdd<double>(keys.AsSpan(t * d, dv), p, acc, acc);
                    }
                    for (var c = 0; c < dv; c++)
                    {
                        output[outOffset + c] = acc[c] / sum;
                    }
                    lse[lseIndex] = max + Math.Log(sum);
                }
            }
        });
        return (output, lse);
    }
}
