using FlashMla.Tensors;

namespace FlashMla.Testing;

/// <summary>
/// The independent reference of a KV cache append, element by element: for every token i whose
/// slot s is not −1 and every KV head h, element c of row (s / page, s % page, h) becomes element
/// c of the token's latent row, or, in the split form, compressedKv[i, h, c] for c &lt; 512 and
/// rope[i, h, c − 512] after. Nothing else changes. Sources of rank 2 have no head dimension.
/// </summary>
public static class KvCacheAppendReference
{
    /// <summary>The slot of a padding token.</summary>
    public const int PaddingSlot = -1;

    /// <summary>Columns of the compressed KV.</summary>
    public const int CompressedDim = 512;

    /// <summary>
    /// The cache's memory after the append (a copy of <paramref name="kCache"/>'s whole span with
    /// the addressed rows replaced), for a latent source.
    /// </summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="latent">[n, d] or [n, h_kv, d].</param>
    /// <param name="slots">The n slots.</param>
    /// <param name="kCache">[num_blocks, page, h_kv, d] before the append.</param>
    /// <returns>The expected memory of the cache.</returns>
    public static T[] Latent<T>(HostTensor<T> latent, ReadOnlySpan<int> slots, HostTensor<T> kCache)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(latent);
        return Apply(slots, kCache, (t, h, c) => At(latent, t, h, c));
    }

    /// <summary>The cache's memory after an append of a compressed KV and a RoPE key (see <see cref="Latent{T}"/>).</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="compressedKv">[n, 512] or [n, h_kv, 512].</param>
    /// <param name="rope">[n, 64] or [n, h_kv, 64].</param>
    /// <param name="slots">The n slots.</param>
    /// <param name="kCache">[num_blocks, page, h_kv, 576] before the append.</param>
    /// <returns>The expected memory of the cache.</returns>
    public static T[] Split<T>(HostTensor<T> compressedKv, HostTensor<T> rope, ReadOnlySpan<int> slots, HostTensor<T> kCache)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(compressedKv);
        ArgumentNullException.ThrowIfNull(rope);
        return Apply(slots, kCache, (t, h, c) => c < CompressedDim ? At(compressedKv, t, h, c) : At(rope, t, h, c - CompressedDim));
    }

    private static T At<T>(HostTensor<T> source, int token, int head, int column)
        where T : unmanaged =>
        source.Span[(int)(source.Layout.Rank == 2
            ? TestTensors.OffsetOf(source.Layout, token, column)
            : TestTensors.OffsetOf(source.Layout, token, head, column))];

    private static T[] Apply<T>(ReadOnlySpan<int> slots, HostTensor<T> kCache, Func<int, int, int, T> element)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(kCache);
        var shape = kCache.Layout.Shape;
        var page = (int)shape[1];
        var heads = (int)shape[2];
        var width = (int)shape[3];
        var result = kCache.Span[..(int)kCache.Layout.RequiredLength].ToArray();
        for (var t = 0; t < slots.Length; t++)
        {
            if (slots[t] == PaddingSlot)
            {
                continue;
            }

            for (var h = 0; h < heads; h++)
            {
                for (var c = 0; c < width; c++)
                {
                    result[TestTensors.OffsetOf(kCache.Layout, slots[t] / page, slots[t] % page, h, c)] = element(t, h, c);
                }
            }
        }

        return result;
    }
}
