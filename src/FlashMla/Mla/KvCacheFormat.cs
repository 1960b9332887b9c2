using System.Globalization;
using FlashMla.Tensors;

namespace FlashMla.Mla;

/// <summary>
/// How a paged KV cache stores one token of one KV head: the element type of its values and the
/// q/k head dimension (576 or 512; V is the first 512 columns). A cache is a tensor
/// <c>[num_blocks, page_block_size, h_kv, ElementsPerToken]</c> of its storage type.
/// </summary>
/// <remarks>
/// Today's formats are dense: <see cref="Dense"/> stores all <see cref="HeadDim"/> values of a
/// token in <see cref="ElementType"/>. Quantised formats (FP8 values with per-group scales) will
/// be further factories whose tokens take another number of storage elements; the decode
/// signatures take the format, so they will not change.
/// </remarks>
public sealed record KvCacheFormat
{
    private KvCacheFormat(ElementType elementType, int headDim)
    {
        ElementType = elementType;
        HeadDim = headDim;
    }

    /// <summary>The element type of the cached values (and of the cache tensor's elements).</summary>
    public ElementType ElementType { get; }

    /// <summary>The q/k head dimension: 576 or 512.</summary>
    public int HeadDim { get; }

    /// <summary>Whether every value is stored as an <see cref="ElementType"/> element, unscaled (true for every format today).</summary>
    public bool IsDense => true;

    /// <summary>Storage elements per token and KV head: the cache tensor's last dimension (<see cref="HeadDim"/> for dense formats).</summary>
    public int ElementsPerToken => HeadDim;

    /// <summary>Bytes per token and KV head.</summary>
    public int BytesPerToken => ElementsPerToken * ElementType.SizeInBytes;

    /// <summary>A dense cache of <paramref name="elementType"/> values.</summary>
    /// <param name="elementType">bf16 or fp16.</param>
    /// <param name="headDim">576 or 512.</param>
    /// <returns>The format.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The head dimension is neither 576 nor 512, or the element type is unknown.</exception>
    public static KvCacheFormat Dense(ElementType elementType, int headDim = 576)
    {
        if (!Enum.IsDefined(elementType))
        {
            throw new ArgumentOutOfRangeException(nameof(elementType), elementType, "Unknown element type.");
        }

        if (!MlaDecodeValidation.SupportedHeadDims.Contains(headDim))
        {
            throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"The head dimension must be one of [{string.Join(", ", MlaDecodeValidation.SupportedHeadDims)}].");
        }

        return new KvCacheFormat(elementType, headDim);
    }

    /// <summary>
    /// The dense format of a cache tensor of <typeparamref name="T"/> elements, taking the head
    /// dimension from its last dimension unchecked (the decode validation checks it against q's).
    /// </summary>
    /// <typeparam name="T"><see cref="Numerics.BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <param name="layout">The cache's layout, [num_blocks, page_block_size, h_kv, head_dim].</param>
    /// <returns>The format.</returns>
    /// <exception cref="ArgumentException"><typeparamref name="T"/> is no attention element type (ParamName <c>kCache</c>).</exception>
    internal static KvCacheFormat DenseOf<T>(TensorLayout layout)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(layout);
        var type = ElementTypes.Of<T>("kCache");
        var last = layout.Rank == 0 ? 0 : layout.Shape[layout.Rank - 1];
        return new KvCacheFormat(type, (int)Math.Clamp(last, 0, int.MaxValue));
    }

    /// <summary>Formats as "bf16 × 576".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{ElementType.ShortName()} × {HeadDim}");
}
