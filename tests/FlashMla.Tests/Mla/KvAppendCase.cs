using System.Runtime.InteropServices;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla;

/// <summary>
/// A KV cache append case on the host: a cache poisoned with NaN everywhere (padding included),
/// fresh random sources of both forms, and slots drawn without repetition from the cache's slots,
/// some of them the padding slot −1.
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
internal sealed class KvAppendCase<T>
    where T : unmanaged
{
    private KvAppendCase(string description, HostTensor<T> kCache, HostTensor<T> latent, HostTensor<T> compressedKv, HostTensor<T> rope, int[] slots, HostTensor<int> slotMapping)
    {
        Description = description;
        KCache = kCache;
        Latent = latent;
        CompressedKv = compressedKv;
        Rope = rope;
        Slots = slots;
        SlotMapping = slotMapping;
    }

    public string Description { get; }

    public HostTensor<T> KCache { get; }

    /// <summary>[n, d] (h_kv = 1, unless <c>headAxis</c>) or [n, h_kv, d].</summary>
    public HostTensor<T> Latent { get; }

    /// <summary>[n, (h_kv,) 512].</summary>
    public HostTensor<T> CompressedKv { get; }

    /// <summary>[n, (h_kv,) d − 512].</summary>
    public HostTensor<T> Rope { get; }

    public int[] Slots { get; }

    /// <summary>The slots as an int32 [n] tensor (strided when padded).</summary>
    public HostTensor<int> SlotMapping { get; }

    /// <summary>Creates a case.</summary>
    /// <param name="tokens">n.</param>
    /// <param name="numBlocks">Pages.</param>
    /// <param name="page">Page size.</param>
    /// <param name="kvHeads">h_kv.</param>
    /// <param name="headDim">d.</param>
    /// <param name="padded">Non-contiguous cache, sources and slot mapping.</param>
    /// <param name="paddingTokens">How many tokens get slot −1.</param>
    /// <param name="seed">The seed.</param>
    /// <param name="headAxis">Give the sources a head dimension even when h_kv = 1.</param>
    public static KvAppendCase<T> Create(int tokens, int numBlocks, int page, int kvHeads, int headDim, bool padded, int paddingTokens, int seed, bool headAxis = false)
    {
        if (tokens > numBlocks * page)
        {
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"{tokens} tokens need distinct slots; the cache has {numBlocks} × {page}.");
        }

        var rng = new Gaussian(seed);
        var description = $"n={tokens} blocks={numBlocks} page={page} h_kv={kvHeads} d={headDim} padded={padded} padding={paddingTokens} {TestTensors.DTypeName<T>()} seed={seed}";
        var kCache = TestTensors.AllocatePoisoned<T>(padded, numBlocks, page, kvHeads, headDim);
        HostTensor<T> Source(int width)
        {
            long[] shape = kvHeads == 1 && !headAxis ? [tokens, width] : [tokens, kvHeads, width];
            var tensor = TestTensors.AllocatePoisoned<T>(padded, shape);
            TestTensors.ForEachOffset(tensor.Layout, (_, offset) => tensor.Span[(int)offset] = RandomInputs.Value<T>(rng));
            return tensor;
        }

        var latent = Source(headDim);
        var compressed = Source(KvCacheAppendReference.CompressedDim);
        var rope = Source(Math.Max(headDim - KvCacheAppendReference.CompressedDim, 1));

        var all = Enumerable.Range(0, numBlocks * page).ToArray();
        rng.Shuffle(all.AsSpan());
        var slots = all.Take(tokens).ToArray();
        foreach (var t in Enumerable.Range(0, tokens).OrderBy(_ => rng.Uniform.Next()).Take(paddingTokens))
        {
            slots[t] = KvCacheAppendReference.PaddingSlot;
        }

        return new KvAppendCase<T>(description, kCache, latent, compressed, rope, slots, SlotTensor(slots, padded));
    }

    /// <summary>Slots as an int32 [n] tensor; strided (every other element) when <paramref name="padded"/>.</summary>
    public static HostTensor<int> SlotTensor(int[] slots, bool padded)
    {
        if (!padded)
        {
            return new HostTensor<int>(slots.ToArray(), TensorLayout.Contiguous(slots.Length));
        }

        var memory = new int[Math.Max(1, (2 * slots.Length) - 1)];
        memory.AsSpan().Fill(int.MinValue);
        for (var i = 0; i < slots.Length; i++)
        {
            memory[2 * i] = slots[i];
        }

        return new HostTensor<int>(memory, new TensorLayout([slots.Length], [2]));
    }

    /// <summary>Throws unless the two memories are equal bit for bit, naming the first differing element.</summary>
    public static void AssertBitwiseEqual(ReadOnlySpan<T> expected, ReadOnlySpan<T> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        var e = MemoryMarshal.Cast<T, ushort>(expected);
        var a = MemoryMarshal.Cast<T, ushort>(actual);
        for (var i = 0; i < e.Length; i++)
        {
            if (e[i] != a[i])
            {
                Assert.Fail($"{what}: element {i} of the cache's memory is 0x{a[i]:x4}, expected 0x{e[i]:x4}");
            }
        }
    }
}
