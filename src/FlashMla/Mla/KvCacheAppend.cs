using System.Globalization;
using FlashMla.Tensors;

namespace FlashMla.Mla;

/// <summary>
/// The shape of one KV cache append: <see cref="Tokens"/> new tokens written into a paged cache of
/// <see cref="NumBlocks"/> × <see cref="PageBlockSize"/> slots with <see cref="KvHeads"/> heads of
/// <see cref="HeadDim"/> columns.
/// </summary>
/// <param name="Tokens">n, the slot mapping's length.</param>
/// <param name="KvHeads">h_kv of the cache.</param>
/// <param name="HeadDim">d of the cache (576 or 512).</param>
/// <param name="NumBlocks">The cache's pages.</param>
/// <param name="PageBlockSize">Slots per page.</param>
internal readonly record struct KvCacheAppendShape(int Tokens, int KvHeads, int HeadDim, int NumBlocks, int PageBlockSize)
{
    /// <summary>Slots of the cache: num_blocks · page_block_size (at most <see cref="int.MaxValue"/>).</summary>
    public int Slots => NumBlocks * PageBlockSize;

    /// <summary>Columns of the RoPE part of a row: d − 512 (0 for a 512-wide cache).</summary>
    public int RopeDim => HeadDim - MlaDecodeValidation.SupportedHeadDimV;
}

/// <summary>
/// A source of appended rows as the kernels read it: strides per token and per KV head (0 when the
/// source has no head dimension, h_kv = 1), in elements; the row itself is contiguous.
/// </summary>
/// <param name="TokenStride">Elements between tokens.</param>
/// <param name="HeadStride">Elements between KV heads.</param>
internal readonly record struct KvAppendSource(long TokenStride, long HeadStride);

/// <summary>
/// Argument checks of KV cache appends, shared by <c>CpuKvCacheWriter</c> and
/// <c>CudaKvCacheWriter</c>; every check runs before anything is written. Layout problems raise
/// <see cref="ArgumentException"/> whose <see cref="ArgumentException.ParamName"/> names the
/// parameter (<c>latent</c>, <c>compressedKv</c>, <c>rope</c>, <c>slotMapping</c>, <c>kCache</c>)
/// with the expected and actual values.
/// </summary>
internal static class KvCacheAppendValidation
{
    /// <summary>The slot of a padding token: skipped, nothing is written.</summary>
    public const int PaddingSlot = -1;

    /// <summary>Columns of the compressed KV (the values): 512.</summary>
    public const int CompressedDim = MlaDecodeValidation.SupportedHeadDimV;

    /// <summary>Columns of the RoPE key of a 576-wide latent: 64.</summary>
    public static int RopeDim => LatentDim - CompressedDim;

    /// <summary>Columns of a whole latent row with its RoPE key: 576.</summary>
    public static int LatentDim => MlaDecodeValidation.SupportedHeadDims.Max();

    /// <summary>Checks the cache and the slot mapping; returns the shape.</summary>
    /// <param name="slotMapping">int32 [n].</param>
    /// <param name="kCache">[num_blocks, page_block_size, h_kv, d], d ∈ {576, 512}, last dimension contiguous.</param>
    /// <returns>The shape.</returns>
    public static KvCacheAppendShape ValidateCache(TensorLayout slotMapping, TensorLayout kCache)
    {
        ArgumentNullException.ThrowIfNull(slotMapping, nameof(slotMapping));
        ArgumentNullException.ThrowIfNull(kCache, nameof(kCache));
        if (kCache.Rank != 4)
        {
            throw new ArgumentException(
                $"kCache must have rank 4 [num_blocks, page_block_size, h_kv, head_dim]; got rank {kCache.Rank} {TensorLayout.FormatDims(kCache.Shape)}.",
                nameof(kCache));
        }

        for (var d = 0; d < 4; d++)
        {
            if (kCache.Shape[d] < 1 || kCache.Shape[d] > int.MaxValue)
            {
                throw new ArgumentException(
                    $"kCache dimension {d} must be in [1, {int.MaxValue}]; got {TensorLayout.FormatDims(kCache.Shape)}.", nameof(kCache));
            }
        }

        var headDim = (int)kCache.Shape[3];
        if (!MlaDecodeValidation.SupportedHeadDims.Contains(headDim))
        {
            throw new ArgumentException(
                $"kCache's head_dim must be one of [{string.Join(", ", MlaDecodeValidation.SupportedHeadDims)}]; got {headDim} ({TensorLayout.FormatDims(kCache.Shape)}).",
                nameof(kCache));
        }

        if (kCache.Strides[3] != 1)
        {
            throw new ArgumentException($"kCache's last dimension must be contiguous (stride 1); got {kCache}.", nameof(kCache));
        }

        var numBlocks = (int)kCache.Shape[0];
        var page = (int)kCache.Shape[1];
        if ((long)numBlocks * page > int.MaxValue)
        {
            throw new ArgumentException(
                $"kCache has {(long)numBlocks * page} slots (num_blocks {numBlocks} × page_block_size {page}); int32 slots address at most {int.MaxValue}.",
                nameof(kCache));
        }

        if (slotMapping.Rank != 1 || slotMapping.Shape[0] > int.MaxValue)
        {
            throw new ArgumentException(
                $"slotMapping must have shape [n] (one int32 slot per token, n ≤ {int.MaxValue}); got {TensorLayout.FormatDims(slotMapping.Shape)}.",
                nameof(slotMapping));
        }

        return new KvCacheAppendShape((int)slotMapping.Shape[0], (int)kCache.Shape[2], headDim, numBlocks, page);
    }

    /// <summary>
    /// Checks a source of <paramref name="width"/> columns per row: [n, h_kv, width], or [n, width]
    /// when h_kv = 1; the row contiguous.
    /// </summary>
    /// <param name="source">The source's layout.</param>
    /// <param name="shape">The append's shape.</param>
    /// <param name="width">The expected last dimension.</param>
    /// <param name="paramName">The parameter.</param>
    /// <returns>Its token and head strides.</returns>
    public static KvAppendSource ValidateSource(TensorLayout source, KvCacheAppendShape shape, int width, string paramName)
    {
        ArgumentNullException.ThrowIfNull(source, paramName);
        var n = shape.Tokens;
        var expected = shape.KvHeads == 1
            ? string.Create(CultureInfo.InvariantCulture, $"[{n}, {width}] or [{n}, 1, {width}]")
            : string.Create(CultureInfo.InvariantCulture, $"[{n}, {shape.KvHeads}, {width}] (n, the cache's h_kv, columns)");
        var matches = source.Rank switch
        {
            2 => shape.KvHeads == 1 && source.Shape[0] == n && source.Shape[1] == width,
            3 => source.Shape[0] == n && source.Shape[1] == shape.KvHeads && source.Shape[2] == width,
            _ => false,
        };
        if (!matches)
        {
            throw new ArgumentException(
                $"{paramName} must have shape {expected} for a slot mapping of {n} tokens and a cache of {shape.KvHeads} KV head(s) × {shape.HeadDim}; got {TensorLayout.FormatDims(source.Shape)}.",
                paramName);
        }

        var last = source.Rank - 1;
        if (width > 1 && source.Strides[last] != 1)
        {
            throw new ArgumentException($"{paramName}'s rows must be contiguous (last stride 1); got {source}.", paramName);
        }

        return source.Rank == 2
            ? new KvAppendSource(source.Strides[0], 0)
            : new KvAppendSource(source.Strides[0], source.Strides[1]);
    }

    /// <summary>Checks the split form's cache width: the compressed KV and the RoPE key fill a 576-wide row.</summary>
    /// <param name="shape">The append's shape.</param>
    public static void RequireSplitForm(KvCacheAppendShape shape)
    {
        if (shape.HeadDim != LatentDim)
        {
            throw new ArgumentException(
                $"Appending a compressed KV [n, {CompressedDim}] and a RoPE key [n, {RopeDim}] needs a cache of head_dim {LatentDim}; kCache has {shape.HeadDim}. Append a [n, {shape.HeadDim}] latent instead.",
                "kCache");
        }
    }

    /// <summary>
    /// Checks host-visible slots: each is the padding slot −1 or in [0, slots), and no slot is
    /// used twice.
    /// </summary>
    /// <param name="slotMapping">The slots.</param>
    /// <param name="shape">The append's shape.</param>
    /// <exception cref="ArgumentOutOfRangeException">A slot is out of range or repeated; the message names the token and the slot.</exception>
    public static void ValidateSlots(HostTensor<int> slotMapping, KvCacheAppendShape shape)
    {
        ArgumentNullException.ThrowIfNull(slotMapping);
        var span = slotMapping.Span;
        var stride = slotMapping.Layout.Rank == 1 ? slotMapping.Layout.Strides[0] : 1;
        var seen = new HashSet<int>();
        for (var t = 0; t < shape.Tokens; t++)
        {
            var slot = span[checked((int)(t * stride))];
            if (slot == PaddingSlot)
            {
                continue;
            }

            if (slot < 0 || slot >= shape.Slots)
            {
                throw new ArgumentOutOfRangeException(nameof(slotMapping), slot, SlotMessage(t, slot, shape) + "; nothing was written.");
            }

            if (!seen.Add(slot))
            {
                throw new ArgumentOutOfRangeException(
                    nameof(slotMapping),
                    slot,
                    string.Create(CultureInfo.InvariantCulture, $"slotMapping[{t}] = {slot} repeats the slot of an earlier token; each slot may be written once per append. Nothing was written."));
            }
        }
    }

    /// <summary>The text of a bad slot: which token, which slot, and the cache's range.</summary>
    /// <param name="token">The token.</param>
    /// <param name="slot">Its slot.</param>
    /// <param name="shape">The append's shape (for the range).</param>
    /// <returns>The text.</returns>
    public static string SlotMessage(int token, int slot, KvCacheAppendShape shape) => string.Create(
        CultureInfo.InvariantCulture,
        $"slotMapping[{token}] = {slot} is outside [0, {shape.Slots}) (num_blocks {shape.NumBlocks} × page_block_size {shape.PageBlockSize}) and is not the padding slot {PaddingSlot}");
}
