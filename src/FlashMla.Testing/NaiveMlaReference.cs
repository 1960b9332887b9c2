using System.Numerics.Tensors;
using FlashMla.Mla;
using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Testing;

/// <summary>The reference results: output [b, s_q, h_q, 512] and natural-log LSE [b, h_q, s_q], row-major.</summary>
/// <param name="Output">The attention output.</param>
/// <param name="Lse">The log-sum-exp (+∞ for rows that see no key).</param>
public sealed record ReferenceResult(double[] Output, double[] Lse);

/// <summary>
/// An independent float64 implementation of MLA decode: for each query row it gathers the visible
/// keys through the block table, computes all scores, and applies a direct (not online) softmax. No
/// schedule, no splits. Rows that see no key get output 0 and LSE +∞. It uses nothing of the
/// library but its tensor types and options.
/// </summary>
public static class NaiveMlaReference
{
    private const int HeadDimV = DecodeCaseSpec.HeadDimV;

    /// <summary>Computes the reference for a generated case of any element type.</summary>
    /// <param name="decodeCase">The case.</param>
    /// <returns>The reference output and LSE.</returns>
    public static ReferenceResult Compute(DecodeCase decodeCase) => decodeCase switch
    {
        DecodeCase<BFloat16> c => Compute(c),
        DecodeCase<Half> c => Compute(c),
        null => throw new ArgumentNullException(nameof(decodeCase)),
        _ => throw new ArgumentException($"No reference for {decodeCase.GetType().Name}.", nameof(decodeCase)),
    };

    /// <summary>Computes the reference for a generated case.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="decodeCase">The case.</param>
    /// <returns>The reference output and LSE.</returns>
    public static ReferenceResult Compute<T>(DecodeCase<T> decodeCase)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(decodeCase);
        return Compute(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, decodeCase.Options);
    }

    /// <summary>Computes the reference for arbitrary (valid) inputs.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="q">q, [b, s_q, h_q, d].</param>
    /// <param name="kCache">k_cache, [num_blocks, page, h_kv, d].</param>
    /// <param name="blockTable">Block table, [b, max_blocks].</param>
    /// <param name="cacheSeqlens">Lengths, [b].</param>
    /// <param name="options">Options.</param>
    /// <returns>The reference output and LSE.</returns>
    public static ReferenceResult Compute<T>(HostTensor<T> q, HostTensor<T> kCache, HostTensor<int> blockTable, HostTensor<int> cacheSeqlens, MlaDecodeOptions options)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(kCache);
        ArgumentNullException.ThrowIfNull(blockTable);
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentNullException.ThrowIfNull(options);

        var b = (int)q.Layout.Shape[0];
        var sq = (int)q.Layout.Shape[1];
        var hq = (int)q.Layout.Shape[2];
        var d = (int)q.Layout.Shape[3];
        var page = (int)kCache.Layout.Shape[1];
        var hkv = (int)kCache.Layout.Shape[2];
        var group = hq / hkv;
        var scale = options.SoftmaxScale is { } s ? (double)s : 1.0 / Math.Sqrt(d);

        var output = new double[(long)b * sq * hq * HeadDimV];
        var lse = new double[(long)b * hq * sq];

        var qs = q.Layout.Strides.ToArray();
        var ks = kCache.Layout.Strides.ToArray();
        var bts = blockTable.Layout.Strides.ToArray();
        var sls = cacheSeqlens.Layout.Strides[0];
        var rowCount = sq * group;

        // One job per (request, KV head): gather its keys, then its query rows in parallel.
        Parallel.For(0, b * hkv, job =>
        {
            var i = job / hkv;
            var kvh = job % hkv;
            var seqlen = cacheSeqlens.Span[(int)(i * sls)];

            // Token t is in page table[i, t / page], row t % page.
            var keys = new double[(long)seqlen * d];
            var kSpan = kCache.Span;
            var btSpan = blockTable.Span;
            for (var t = 0; t < seqlen; t++)
            {
                var pageId = btSpan[(int)((i * bts[0]) + ((t / page) * bts[1]))];
                var baseOffset = (pageId * ks[0]) + ((t % page) * ks[1]) + (kvh * ks[2]);
                for (var c = 0; c < d; c++)
                {
                    keys[((long)t * d) + c] = TestTensors.ToDouble(kSpan[(int)(baseOffset + (c * ks[3]))]);
                }
            }

            Parallel.For(0, rowCount, r =>
            {
                var token = r / group;
                var head = (kvh * group) + (r % group);
                var qSpan = q.Span;
                var qRow = new double[d];
                var qBase = (i * qs[0]) + (token * qs[1]) + (head * qs[2]);
                for (var c = 0; c < d; c++)
                {
                    qRow[c] = TestTensors.ToDouble(qSpan[(int)(qBase + (c * qs[3]))]);
                }

                var visible = options.Causal ? Math.Min(seqlen, seqlen - sq + token + 1) : seqlen;
                var outBase = ((((long)i * sq) + token) * hq + head) * HeadDimV;
                var lseIndex = (((long)i * hq) + head) * sq + token;
                if (visible <= 0)
                {
                    lse[lseIndex] = double.PositiveInfinity;
                    return; // output stays 0
                }

                var scores = new double[visible];
                for (var t = 0; t < visible; t++)
                {
                    scores[t] = scale * TensorPrimitives.Dot<double>(qRow, keys.AsSpan(t * d, d));
                }

                var max = scores.Max();
                var sum = 0.0;
                for (var t = 0; t < visible; t++)
                {
                    sum += Math.Exp(scores[t] - max);
                }

                var logSumExp = Math.Log(sum) + max;
                lse[lseIndex] = logSumExp;
                var outRow = output.AsSpan((int)outBase, HeadDimV);
                for (var t = 0; t < visible; t++)
                {
                    var p = Math.Exp(scores[t] - logSumExp);
                    TensorPrimitives.MultiplyAdd<double>(keys.AsSpan(t * d, HeadDimV), p, outRow, outRow);
                }
            });
        });

        return new ReferenceResult(output, lse);
    }
}
