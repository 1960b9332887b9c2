using FlashMla.Mla;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla;

/// <summary>
/// What the paged caches of a stack of layers should hold: every request's token latents per
/// layer, in token order, drawn at random when tokens are added. It builds the slot-mapping rows
/// of a step (the latents its slots receive) and, independently of any allocator, a contiguous
/// layout of a batch's requests (request i in pages i·P …) for the float64 reference.
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
internal sealed class PagedCacheModel<T>(int layers, int seed)
    where T : unmanaged
{
    /// <summary>Elements per token: the 512 latent columns and the 64 RoPE columns.</summary>
    public const int TokenWidth = 576;

    private readonly Gaussian _rng = new(seed);
    private readonly Dictionary<KvRequestId, List<T[]>[]> _tokens = [];

    /// <summary>The layers.</summary>
    public int Layers { get; } = layers;

    /// <summary>Starts a request with <paramref name="tokens"/> new tokens.</summary>
    public void Add(KvRequestId request, int tokens)
    {
        _tokens[request] = [.. Enumerable.Range(0, Layers).Select(_ => new List<T[]>())];
        Append(request, tokens);
    }

    /// <summary>Starts a request with the first <paramref name="prefix"/> tokens of another.</summary>
    public void Fork(KvRequestId source, KvRequestId request, int prefix) =>
        _tokens[request] = [.. _tokens[source].Select(l => l.Take(prefix).ToList())];

    /// <summary>Adds random tokens to every layer of a request.</summary>
    public void Append(KvRequestId request, int tokens)
    {
        foreach (var layer in _tokens[request])
        {
            for (var t = 0; t < tokens; t++)
            {
                var latent = new T[TokenWidth];
                RandomInputs.Fill<T>(latent, _rng);
                layer.Add(latent);
            }
        }
    }

    /// <summary>Forgets a request.</summary>
    public void Free(KvRequestId request) => _tokens.Remove(request);

    /// <summary>A request's length.</summary>
    public int Length(KvRequestId request) => _tokens[request][0].Count;

    /// <summary>Random queries [rows, s_q, h_q, 576].</summary>
    public HostTensor<T> Queries(int rows, int queryLength, int queryHeads)
    {
        var q = HostTensor<T>.Create(rows, queryLength, queryHeads, TokenWidth);
        RandomInputs.Fill(q.Span, _rng);
        return q;
    }

    /// <summary>
    /// The latents of a step's slot mapping for one layer: row r gets the latent of the token its
    /// slot was handed out for (rows of −1 stay poison). <paramref name="pendingBefore"/> holds each
    /// batch request's pending tokens before the step was filled.
    /// </summary>
    public HostTensor<T> StepLatents(IReadOnlyList<KvRequestId> batch, IReadOnlyList<int> pendingBefore, int rows, int tokensPerRequest, int layer)
    {
        var latents = HostTensor<T>.Create((long)rows * tokensPerRequest, TokenWidth);
        latents.Span.Fill(TestTensors.Poison<T>());
        for (var i = 0; i < batch.Count; i++)
        {
            var tokens = _tokens[batch[i]][layer];
            for (var t = 0; t < pendingBefore[i]; t++)
            {
                tokens[tokens.Count - pendingBefore[i] + t].CopyTo(latents.Span.Slice(((i * tokensPerRequest) + t) * TokenWidth, TokenWidth));
            }
        }

        return latents;
    }

    /// <summary>
    /// One layer of a batch laid out contiguously: request i's tokens in pages i·P … (P the most
    /// pages any of them needs), NaN in every other slot; rows of null requests (padding) have length 0.
    /// </summary>
    public (HostTensor<T> KCache, HostTensor<int> BlockTable, HostTensor<int> CacheSeqlens) Contiguous(IReadOnlyList<KvRequestId?> rows, int pageBlockSize, int layer)
    {
        var lengths = rows.Select(r => r is { } id ? Length(id) : 0).ToArray();
        var pages = Math.Max(1, lengths.Max(l => (l + pageBlockSize - 1) / pageBlockSize));
        var kCache = HostTensor<T>.Create((long)rows.Count * pages, pageBlockSize, 1, TokenWidth);
        kCache.Span.Fill(TestTensors.Poison<T>());
        var blockTable = HostTensor<int>.Create(rows.Count, pages);
        var seqlens = new HostTensor<int>(lengths, TensorLayout.Contiguous(rows.Count));
        for (var i = 0; i < rows.Count; i++)
        {
            for (var j = 0; j < pages; j++)
            {
                blockTable.Span[(i * pages) + j] = (i * pages) + j;
            }

            if (rows[i] is not { } id)
            {
                continue;
            }

            var tokens = _tokens[id][layer];
            for (var t = 0; t < tokens.Count; t++)
            {
                tokens[t].CopyTo(kCache.Span.Slice(((i * pages * pageBlockSize) + t) * TokenWidth, TokenWidth));
            }
        }

        return (kCache, blockTable, seqlens);
    }

    /// <summary>Writes a step's latents into a host cache [num_blocks, page, 1, 576] through its slot mapping (the semantics of the cache writer).</summary>
    public static void WriteSlots(HostTensor<T> latents, ReadOnlySpan<int> slotMapping, HostTensor<T> kCache)
    {
        var page = (int)kCache.Layout.Shape[1];
        for (var r = 0; r < slotMapping.Length; r++)
        {
            var slot = slotMapping[r];
            if (slot < 0)
            {
                continue;
            }

            var offset = TestTensors.OffsetOf(kCache.Layout, slot / page, slot % page, 0, 0);
            latents.Span.Slice(r * TokenWidth, TokenWidth).CopyTo(kCache.Span.Slice((int)offset, TokenWidth));
        }
    }
}
