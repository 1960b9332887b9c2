using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FlashMla.Mla.Cpu;

/// <summary>
/// The two register-blocked products of one KV tile, vectorised over query rows so that every
/// row of a KV head (its grouped heads and query tokens) shares each widened key.
/// </summary>
/// <remarks>
/// <para>
/// Layouts (all float32, rows padded to a multiple of the vector width, <c>rowsPad</c>):
/// Qᵀ is <c>[d][rowsPad]</c>, the tile's keys are <c>[keys][ldk]</c> (V is their first
/// columns), scores and probabilities are <c>[keys][rowsPad]</c> and the output accumulator Oᵀ is
/// <c>[PaddedValueDim][rowsPad]</c>.
/// </para>
/// <para>
/// Scores: <c>S[j][r] = Σ_c K[j][c] · Qᵀ[c][r]</c>, six keys × two row vectors per block (twelve
/// independent accumulator chains), or twelve keys × one row vector for an odd vector count.
/// Values: <c>Oᵀ[v][r] += Σ_j K[j][v] · P[j][r]</c>, six value columns × two row vectors, or twelve × one.
/// Every sum runs in a fixed order with fused multiply-adds, so results do not depend on threads.
/// </para>
/// </remarks>
internal static class AttentionTile
{
    /// <summary>Keys per tile; a multiple of both key blockings (6 and 12).</summary>
    public const int TileKeys = 48;

    /// <summary>Key rows are padded to a multiple of this (the wider key blocking).</summary>
    public const int KeyPadding = 12;

    /// <summary>Oᵀ rows computed: the value dimension 512 rounded up to a multiple of 12.</summary>
    public const int PaddedValueDim = 516;

    /// <summary>Floats per widened key row: the largest head dimension (≥ <see cref="PaddedValueDim"/>).</summary>
    public const int KeyStride = 576;

    /// <summary>Computes the scaled-by-nothing scores <c>S[j][r]</c> of <paramref name="keyCount"/> keys (a multiple of <see cref="KeyPadding"/>).</summary>
    public static void Scores<V>(ReadOnlySpan<float> qt, int headDim, int rowsPad, ReadOnlySpan<float> keys, int keyCount, Span<float> scores)
        where V : struct, ISimdFloat<V>
    {
        var w = V.Count;
        ref var q0 = ref MemoryMarshal.GetReference(qt);
        ref var k0 = ref MemoryMarshal.GetReference(keys);
        ref var s0 = ref MemoryMarshal.GetReference(scores);
        var rv = 0;
        for (; rv + (2 * w) <= rowsPad; rv += 2 * w)
        {
            for (var j = 0; j < keyCount; j += 6)
            {
                Scores6x2<V>(ref Unsafe.Add(ref q0, rv), rowsPad, headDim, ref Unsafe.Add(ref k0, j * KeyStride), ref Unsafe.Add(ref s0, (j * rowsPad) + rv), rowsPad);
            }
        }

        if (rv < rowsPad)
        {
            for (var j = 0; j < keyCount; j += 12)
            {
                Scores12x1<V>(ref Unsafe.Add(ref q0, rv), rowsPad, headDim, ref Unsafe.Add(ref k0, j * KeyStride), ref Unsafe.Add(ref s0, (j * rowsPad) + rv), rowsPad);
            }
        }
    }

    /// <summary>Adds <c>Σ_j K[j][v] · P[j][r]</c> to Oᵀ for v &lt; <see cref="PaddedValueDim"/> over <paramref name="keyCount"/> keys.</summary>
    public static void AccumulateValues<V>(ReadOnlySpan<float> probabilities, int rowsPad, ReadOnlySpan<float> keys, int keyCount, Span<float> ot)
        where V : struct, ISimdFloat<V>
    {
        var w = V.Count;
        ref var p0 = ref MemoryMarshal.GetReference(probabilities);
        ref var k0 = ref MemoryMarshal.GetReference(keys);
        ref var o0 = ref MemoryMarshal.GetReference(ot);
        var rv = 0;
        for (; rv + (2 * w) <= rowsPad; rv += 2 * w)
        {
            for (var v = 0; v < PaddedValueDim; v += 6)
            {
                Values6x2<V>(ref Unsafe.Add(ref p0, rv), rowsPad, keyCount, ref Unsafe.Add(ref k0, v), ref Unsafe.Add(ref o0, (v * rowsPad) + rv), rowsPad);
            }
        }

        if (rv < rowsPad)
        {
            for (var v = 0; v < PaddedValueDim; v += 12)
            {
                Values12x1<V>(ref Unsafe.Add(ref p0, rv), rowsPad, keyCount, ref Unsafe.Add(ref k0, v), ref Unsafe.Add(ref o0, (v * rowsPad) + rv), rowsPad);
            }
        }
    }

    /// <summary>Scales the scores by <paramref name="scale"/> in place and returns each row's maximum in <paramref name="rowMax"/>.</summary>
    public static void ScaleAndMax<V>(Span<float> scores, int rowsPad, int keyCount, float scale, Span<float> rowMax)
        where V : struct, ISimdFloat<V>
    {
        var w = V.Count;
        ref var s0 = ref MemoryMarshal.GetReference(scores);
        ref var m0 = ref MemoryMarshal.GetReference(rowMax);
        var k = V.Broadcast(scale);
        for (var rv = 0; rv < rowsPad; rv += w)
        {
            ref var sp = ref Unsafe.Add(ref s0, rv);
            var max = V.Broadcast(float.NegativeInfinity);
            for (var j = 0; j < keyCount; j++)
            {
                var x = V.Multiply(V.Load(in sp), k);
                V.Store(x, ref sp);
                max = V.Max(max, x);
                sp = ref Unsafe.Add(ref sp, rowsPad);
            }

            V.Store(max, ref Unsafe.Add(ref m0, rv));
        }
    }

    /// <summary>Subtracts each row's <paramref name="rowBase"/> from its scores in place.</summary>
    public static void SubtractRows<V>(Span<float> scores, int rowsPad, int keyCount, ReadOnlySpan<float> rowBase)
        where V : struct, ISimdFloat<V>
    {
        var w = V.Count;
        ref var s0 = ref MemoryMarshal.GetReference(scores);
        ref var b0 = ref MemoryMarshal.GetReference(rowBase);
        for (var rv = 0; rv < rowsPad; rv += w)
        {
            ref var sp = ref Unsafe.Add(ref s0, rv);
            var b = V.Load(in Unsafe.Add(ref b0, rv));
            for (var j = 0; j < keyCount; j++)
            {
                V.Store(V.Subtract(V.Load(in sp), b), ref sp);
                sp = ref Unsafe.Add(ref sp, rowsPad);
            }
        }
    }

    /// <summary>Sets <c>rowSum = rowSum · correction + Σ_j P[j][r]</c> (the sum over keys in key order).</summary>
    public static void UpdateSums<V>(ReadOnlySpan<float> probabilities, int rowsPad, int keyCount, ReadOnlySpan<float> correction, Span<float> rowSum)
        where V : struct, ISimdFloat<V>
    {
        var w = V.Count;
        ref var p0 = ref MemoryMarshal.GetReference(probabilities);
        ref var c0 = ref MemoryMarshal.GetReference(correction);
        ref var r0 = ref MemoryMarshal.GetReference(rowSum);
        for (var rv = 0; rv < rowsPad; rv += w)
        {
            ref var pp = ref Unsafe.Add(ref p0, rv);
            var sum = V.Load(in pp);
            for (var j = 1; j < keyCount; j++)
            {
                pp = ref Unsafe.Add(ref pp, rowsPad);
                sum = V.Add(sum, V.Load(in pp));
            }

            ref var rs = ref Unsafe.Add(ref r0, rv);
            V.Store(V.MultiplyAdd(V.Load(in rs), V.Load(in Unsafe.Add(ref c0, rv)), sum), ref rs);
        }
    }

    /// <summary>Multiplies every row of Oᵀ's lanes by its correction: <c>Oᵀ[v][r] *= correction[r]</c>.</summary>
    public static void Rescale<V>(Span<float> ot, int rowsPad, ReadOnlySpan<float> correction)
        where V : struct, ISimdFloat<V>
    {
        var w = V.Count;
        ref var o0 = ref MemoryMarshal.GetReference(ot);
        ref var c0 = ref MemoryMarshal.GetReference(correction);
        for (var rv = 0; rv < rowsPad; rv += w)
        {
            var c = V.Load(in Unsafe.Add(ref c0, rv));
            ref var op = ref Unsafe.Add(ref o0, rv);
            for (var v = 0; v < PaddedValueDim; v++)
            {
                V.Store(V.Multiply(V.Load(in op), c), ref op);
                op = ref Unsafe.Add(ref op, rowsPad);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores6x2<V>(ref float q, int qStride, int headDim, ref float k, ref float s, int sStride)
        where V : struct, ISimdFloat<V>
    {
        var w = V.Count;
        V c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        V c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        ref var k1 = ref Unsafe.Add(ref k, KeyStride);
        ref var k2 = ref Unsafe.Add(ref k, 2 * KeyStride);
        ref var k3 = ref Unsafe.Add(ref k, 3 * KeyStride);
        ref var k4 = ref Unsafe.Add(ref k, 4 * KeyStride);
        ref var k5 = ref Unsafe.Add(ref k, 5 * KeyStride);
        ref var qp = ref q;
        for (var c = 0; c < headDim; c++)
        {
            var x0 = V.Load(in qp);
            var x1 = V.Load(in Unsafe.Add(ref qp, w));
            var b = V.Broadcast(Unsafe.Add(ref k, c));
            c00 = V.MultiplyAdd(b, x0, c00);
            c01 = V.MultiplyAdd(b, x1, c01);
            b = V.Broadcast(Unsafe.Add(ref k1, c));
            c10 = V.MultiplyAdd(b, x0, c10);
            c11 = V.MultiplyAdd(b, x1, c11);
            b = V.Broadcast(Unsafe.Add(ref k2, c));
            c20 = V.MultiplyAdd(b, x0, c20);
            c21 = V.MultiplyAdd(b, x1, c21);
            b = V.Broadcast(Unsafe.Add(ref k3, c));
            c30 = V.MultiplyAdd(b, x0, c30);
            c31 = V.MultiplyAdd(b, x1, c31);
            b = V.Broadcast(Unsafe.Add(ref k4, c));
            c40 = V.MultiplyAdd(b, x0, c40);
            c41 = V.MultiplyAdd(b, x1, c41);
            b = V.Broadcast(Unsafe.Add(ref k5, c));
            c50 = V.MultiplyAdd(b, x0, c50);
            c51 = V.MultiplyAdd(b, x1, c51);
            qp = ref Unsafe.Add(ref qp, qStride);
        }

        V.Store(c00, ref s);
        V.Store(c01, ref Unsafe.Add(ref s, w));
        V.Store(c10, ref Unsafe.Add(ref s, sStride));
        V.Store(c11, ref Unsafe.Add(ref s, sStride + w));
        V.Store(c20, ref Unsafe.Add(ref s, 2 * sStride));
        V.Store(c21, ref Unsafe.Add(ref s, (2 * sStride) + w));
        V.Store(c30, ref Unsafe.Add(ref s, 3 * sStride));
        V.Store(c31, ref Unsafe.Add(ref s, (3 * sStride) + w));
        V.Store(c40, ref Unsafe.Add(ref s, 4 * sStride));
        V.Store(c41, ref Unsafe.Add(ref s, (4 * sStride) + w));
        V.Store(c50, ref Unsafe.Add(ref s, 5 * sStride));
        V.Store(c51, ref Unsafe.Add(ref s, (5 * sStride) + w));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores12x1<V>(ref float q, int qStride, int headDim, ref float k, ref float s, int sStride)
        where V : struct, ISimdFloat<V>
    {
        // Two halves of six keys each: the same blocking with one row vector per half.
        ScoresHalf<V>(ref q, qStride, headDim, ref k, ref s, sStride);
        ScoresHalf<V>(ref q, qStride, headDim, ref Unsafe.Add(ref k, 6 * KeyStride), ref Unsafe.Add(ref s, 6 * sStride), sStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScoresHalf<V>(ref float q, int qStride, int headDim, ref float k, ref float s, int sStride)
        where V : struct, ISimdFloat<V>
    {
        // Six keys × one row vector, with the head dimension split in two interleaved halves so that
        // twelve chains stay independent; the halves are added at the end in a fixed order.
        V c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        V d0 = default, d1 = default, d2 = default, d3 = default, d4 = default, d5 = default;
        ref var k1 = ref Unsafe.Add(ref k, KeyStride);
        ref var k2 = ref Unsafe.Add(ref k, 2 * KeyStride);
        ref var k3 = ref Unsafe.Add(ref k, 3 * KeyStride);
        ref var k4 = ref Unsafe.Add(ref k, 4 * KeyStride);
        ref var k5 = ref Unsafe.Add(ref k, 5 * KeyStride);
        ref var qp = ref q;
        var c = 0;
        for (; c + 1 < headDim; c += 2)
        {
            var x = V.Load(in qp);
            var y = V.Load(in Unsafe.Add(ref qp, qStride));
            c0 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k, c)), x, c0);
            d0 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k, c + 1)), y, d0);
            c1 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k1, c)), x, c1);
            d1 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k1, c + 1)), y, d1);
            c2 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k2, c)), x, c2);
            d2 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k2, c + 1)), y, d2);
            c3 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k3, c)), x, c3);
            d3 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k3, c + 1)), y, d3);
            c4 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k4, c)), x, c4);
            d4 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k4, c + 1)), y, d4);
            c5 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k5, c)), x, c5);
            d5 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref k5, c + 1)), y, d5);
            qp = ref Unsafe.Add(ref qp, 2 * qStride);
        }

        // Head dimensions are even (576, 512), so c == headDim here.
        StoreSum(c0, d0, ref s);
        StoreSum(c1, d1, ref Unsafe.Add(ref s, sStride));
        StoreSum(c2, d2, ref Unsafe.Add(ref s, 2 * sStride));
        StoreSum(c3, d3, ref Unsafe.Add(ref s, 3 * sStride));
        StoreSum(c4, d4, ref Unsafe.Add(ref s, 4 * sStride));
        StoreSum(c5, d5, ref Unsafe.Add(ref s, 5 * sStride));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreSum<V>(V a, V b, ref float destination)
        where V : struct, ISimdFloat<V> =>
        V.Store(V.MultiplyAdd(b, V.Broadcast(1f), a), ref destination);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values6x2<V>(ref float p, int pStride, int keyCount, ref float k, ref float o, int oStride)
        where V : struct, ISimdFloat<V>
    {
        var w = V.Count;
        var c00 = V.Load(in o);
        var c01 = V.Load(in Unsafe.Add(ref o, w));
        var c10 = V.Load(in Unsafe.Add(ref o, oStride));
        var c11 = V.Load(in Unsafe.Add(ref o, oStride + w));
        var c20 = V.Load(in Unsafe.Add(ref o, 2 * oStride));
        var c21 = V.Load(in Unsafe.Add(ref o, (2 * oStride) + w));
        var c30 = V.Load(in Unsafe.Add(ref o, 3 * oStride));
        var c31 = V.Load(in Unsafe.Add(ref o, (3 * oStride) + w));
        var c40 = V.Load(in Unsafe.Add(ref o, 4 * oStride));
        var c41 = V.Load(in Unsafe.Add(ref o, (4 * oStride) + w));
        var c50 = V.Load(in Unsafe.Add(ref o, 5 * oStride));
        var c51 = V.Load(in Unsafe.Add(ref o, (5 * oStride) + w));
        ref var pp = ref p;
        ref var kp = ref k;
        for (var j = 0; j < keyCount; j++)
        {
            var x0 = V.Load(in pp);
            var x1 = V.Load(in Unsafe.Add(ref pp, w));
            var b = V.Broadcast(kp);
            c00 = V.MultiplyAdd(b, x0, c00);
            c01 = V.MultiplyAdd(b, x1, c01);
            b = V.Broadcast(Unsafe.Add(ref kp, 1));
            c10 = V.MultiplyAdd(b, x0, c10);
            c11 = V.MultiplyAdd(b, x1, c11);
            b = V.Broadcast(Unsafe.Add(ref kp, 2));
            c20 = V.MultiplyAdd(b, x0, c20);
            c21 = V.MultiplyAdd(b, x1, c21);
            b = V.Broadcast(Unsafe.Add(ref kp, 3));
            c30 = V.MultiplyAdd(b, x0, c30);
            c31 = V.MultiplyAdd(b, x1, c31);
            b = V.Broadcast(Unsafe.Add(ref kp, 4));
            c40 = V.MultiplyAdd(b, x0, c40);
            c41 = V.MultiplyAdd(b, x1, c41);
            b = V.Broadcast(Unsafe.Add(ref kp, 5));
            c50 = V.MultiplyAdd(b, x0, c50);
            c51 = V.MultiplyAdd(b, x1, c51);
            pp = ref Unsafe.Add(ref pp, pStride);
            kp = ref Unsafe.Add(ref kp, KeyStride);
        }

        V.Store(c00, ref o);
        V.Store(c01, ref Unsafe.Add(ref o, w));
        V.Store(c10, ref Unsafe.Add(ref o, oStride));
        V.Store(c11, ref Unsafe.Add(ref o, oStride + w));
        V.Store(c20, ref Unsafe.Add(ref o, 2 * oStride));
        V.Store(c21, ref Unsafe.Add(ref o, (2 * oStride) + w));
        V.Store(c30, ref Unsafe.Add(ref o, 3 * oStride));
        V.Store(c31, ref Unsafe.Add(ref o, (3 * oStride) + w));
        V.Store(c40, ref Unsafe.Add(ref o, 4 * oStride));
        V.Store(c41, ref Unsafe.Add(ref o, (4 * oStride) + w));
        V.Store(c50, ref Unsafe.Add(ref o, 5 * oStride));
        V.Store(c51, ref Unsafe.Add(ref o, (5 * oStride) + w));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values12x1<V>(ref float p, int pStride, int keyCount, ref float k, ref float o, int oStride)
        where V : struct, ISimdFloat<V>
    {
        var c0 = V.Load(in o);
        var c1 = V.Load(in Unsafe.Add(ref o, oStride));
        var c2 = V.Load(in Unsafe.Add(ref o, 2 * oStride));
        var c3 = V.Load(in Unsafe.Add(ref o, 3 * oStride));
        var c4 = V.Load(in Unsafe.Add(ref o, 4 * oStride));
        var c5 = V.Load(in Unsafe.Add(ref o, 5 * oStride));
        var c6 = V.Load(in Unsafe.Add(ref o, 6 * oStride));
        var c7 = V.Load(in Unsafe.Add(ref o, 7 * oStride));
        var c8 = V.Load(in Unsafe.Add(ref o, 8 * oStride));
        var c9 = V.Load(in Unsafe.Add(ref o, 9 * oStride));
        var c10 = V.Load(in Unsafe.Add(ref o, 10 * oStride));
        var c11 = V.Load(in Unsafe.Add(ref o, 11 * oStride));
        ref var pp = ref p;
        ref var kp = ref k;
        for (var j = 0; j < keyCount; j++)
        {
            var x = V.Load(in pp);
            c0 = V.MultiplyAdd(V.Broadcast(kp), x, c0);
            c1 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref kp, 1)), x, c1);
            c2 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref kp, 2)), x, c2);
            c3 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref kp, 3)), x, c3);
            c4 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref kp, 4)), x, c4);
            c5 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref kp, 5)), x, c5);
            c6 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref kp, 6)), x, c6);
            c7 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref kp, 7)), x, c7);
            c8 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref kp, 8)), x, c8);
            c9 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref kp, 9)), x, c9);
            c10 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref kp, 10)), x, c10);
            c11 = V.MultiplyAdd(V.Broadcast(Unsafe.Add(ref kp, 11)), x, c11);
            pp = ref Unsafe.Add(ref pp, pStride);
            kp = ref Unsafe.Add(ref kp, KeyStride);
        }

        V.Store(c0, ref o);
        V.Store(c1, ref Unsafe.Add(ref o, oStride));
        V.Store(c2, ref Unsafe.Add(ref o, 2 * oStride));
        V.Store(c3, ref Unsafe.Add(ref o, 3 * oStride));
        V.Store(c4, ref Unsafe.Add(ref o, 4 * oStride));
        V.Store(c5, ref Unsafe.Add(ref o, 5 * oStride));
        V.Store(c6, ref Unsafe.Add(ref o, 6 * oStride));
        V.Store(c7, ref Unsafe.Add(ref o, 7 * oStride));
        V.Store(c8, ref Unsafe.Add(ref o, 8 * oStride));
        V.Store(c9, ref Unsafe.Add(ref o, 9 * oStride));
        V.Store(c10, ref Unsafe.Add(ref o, 10 * oStride));
        V.Store(c11, ref Unsafe.Add(ref o, 11 * oStride));
    }
}
