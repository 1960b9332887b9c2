using FlashMla.Tensors;

namespace FlashMla.Mla;

/// <summary>
/// A decode call as a kernel path sees it: the validated shape, the element types of q and the
/// output, the KV cache's format and layout. <see cref="MlaDecodeValidation.ValidateProblem{TQ, TKv, TOut}"/>
/// produces it from a call's tensors; it can also be built from a shape to ask which kernel a
/// decoder would run.
/// </summary>
public readonly record struct MlaDecodeProblem
{
    /// <summary>Creates a problem.</summary>
    /// <param name="shape">The shape.</param>
    /// <param name="queryType">The element type of q.</param>
    /// <param name="kvFormat">The KV cache's format (its head dimension must be the shape's).</param>
    /// <param name="outputType">The element type of the output.</param>
    /// <param name="kvLayout">The KV cache's layout; null means contiguous <c>[num_blocks, page_block_size, h_kv, elements per token]</c>.</param>
    /// <exception cref="ArgumentException">The format's head dimension differs from the shape's, or the layout's shape from the shape.</exception>
    public MlaDecodeProblem(MlaDecodeShape shape, ElementType queryType, KvCacheFormat kvFormat, ElementType outputType, TensorLayout? kvLayout = null)
    {
        ArgumentNullException.ThrowIfNull(kvFormat);
        if (kvFormat.HeadDim != shape.HeadDim)
        {
            throw new ArgumentException($"The KV format {kvFormat} has head dimension {kvFormat.HeadDim}; the shape has {shape.HeadDim}.", nameof(kvFormat));
        }

        kvLayout ??= TensorLayout.Contiguous(shape.NumBlocks, shape.PageBlockSize, shape.KvHeads, kvFormat.ElementsPerToken);
        if (!kvLayout.Shape.SequenceEqual([shape.NumBlocks, shape.PageBlockSize, shape.KvHeads, kvFormat.ElementsPerToken]))
        {
            throw new ArgumentException($"The KV layout {kvLayout} does not have the shape's [num_blocks, page_block_size, h_kv, elements per token].", nameof(kvLayout));
        }

        Shape = shape;
        QueryType = queryType;
        KvFormat = kvFormat;
        OutputType = outputType;
        KvLayout = kvLayout;
    }

    /// <summary>The shape.</summary>
    public MlaDecodeShape Shape { get; }

    /// <summary>The element type of q.</summary>
    public ElementType QueryType { get; }

    /// <summary>The KV cache's format.</summary>
    public KvCacheFormat KvFormat { get; }

    /// <summary>The element type of the output.</summary>
    public ElementType OutputType { get; }

    /// <summary>The KV cache's layout (strides in storage elements).</summary>
    public TensorLayout KvLayout { get; }
}
