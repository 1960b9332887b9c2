using FlashMla.Mla;
using FlashMla.Numerics;

namespace FlashMla.Testing;

/// <summary>
/// The distributions of FlashMLA's dense decode test, used by <see cref="DecodeCase{T}"/> and by
/// the bench, which lays out its own caches: q and k are N(0,1)/10 clamped to [−1, 1] and rounded
/// to the element type; with varlen each length is max(N(s_k, s_k/2), s_q); unused block-table
/// entries hold <see cref="UnusedBlockId"/>.
/// </summary>
public static class RandomInputs
{
    /// <summary>The block id in unused block-table entries (FlashMLA's, <see cref="BlockTables.UnusedBlockId"/>); it must never be dereferenced.</summary>
    public const int UnusedBlockId = BlockTables.UnusedBlockId;

    /// <summary>
    /// The b KV lengths of a case: <see cref="DecodeCaseSpec.Lengths"/> when given, else s_k, or
    /// max(N(s_k, s_k/2), s_q) with varlen; then <see cref="DecodeCaseSpec.ZeroLengthRequests"/>
    /// requests chosen at random get length 0.
    /// </summary>
    /// <param name="spec">The case.</param>
    /// <param name="rng">The generator (the case's draws start here).</param>
    /// <returns>The lengths.</returns>
    public static int[] Lengths(DecodeCaseSpec spec, Gaussian rng)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(rng);
        int[] lengths;
        if (spec.Lengths is { } given)
        {
            lengths = given.Count == spec.Batch
                ? [.. given]
                : throw new ArgumentException($"The case gives {given.Count} lengths for b = {spec.Batch}.", nameof(spec));
        }
        else
        {
            lengths = new int[spec.Batch];
            for (var i = 0; i < lengths.Length; i++)
            {
                lengths[i] = spec.Varlen
                    ? (int)Math.Max(rng.Next(spec.SeqlenK, spec.SeqlenK / 2.0), spec.QueryLength)
                    : spec.SeqlenK;
            }
        }

        if (spec.ZeroLengthRequests > 0)
        {
            var order = Enumerable.Range(0, spec.Batch).ToArray();
            rng.Shuffle(order.AsSpan());
            foreach (var i in order.Take(spec.ZeroLengthRequests))
            {
                lengths[i] = 0;
            }
        }

        return lengths;
    }

    /// <summary>One value: N(0,1)/10 clamped to [−1, 1], rounded to float and then to the element type (nearest even).</summary>
    /// <typeparam name="T"><see cref="BFloat16"/>, <see cref="Half"/> or <see cref="float"/>.</typeparam>
    /// <param name="rng">The generator.</param>
    /// <returns>The value.</returns>
    public static T Value<T>(Gaussian rng)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(rng);
        return TestTensors.FromDouble<T>((float)Math.Clamp(rng.Next() / 10.0, -1.0, 1.0));
    }

    /// <summary>Fills with <see cref="Value{T}"/>, in order.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="destination">The values to fill.</param>
    /// <param name="rng">The generator.</param>
    public static void Fill<T>(Span<T> destination, Gaussian rng)
        where T : unmanaged
    {
        for (var i = 0; i < destination.Length; i++)
        {
            destination[i] = Value<T>(rng);
        }
    }
}
