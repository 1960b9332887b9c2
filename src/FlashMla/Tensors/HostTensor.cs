namespace FlashMla.Tensors;

/// <summary>
/// A strided tensor view over managed memory: a <see cref="Memory{T}"/> plus a
/// <see cref="TensorLayout"/>. It does not copy; several tensors may share one buffer.
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
public sealed class HostTensor<T> : ITensorView
    where T : unmanaged
{
    /// <summary>Wraps existing memory with a layout.</summary>
    /// <param name="memory">The backing memory; element 0 of the layout is its first element.</param>
    /// <param name="layout">The shape and strides.</param>
    /// <exception cref="ArgumentNullException"><paramref name="layout"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="memory"/> is shorter than
    /// <see cref="TensorLayout.RequiredLength"/>.</exception>
    public HostTensor(Memory<T> memory, TensorLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        if (memory.Length < layout.RequiredLength)
        {
            throw new ArgumentException(
                $"The memory holds {memory.Length} elements but the layout {layout} needs {layout.RequiredLength}.",
                nameof(memory));
        }

        Memory = memory;
        Layout = layout;
    }

    /// <summary>Allocates a zeroed, row-major contiguous tensor.</summary>
    /// <param name="shape">The size of each dimension.</param>
    /// <returns>The new tensor.</returns>
    /// <exception cref="ArgumentException">A size is negative, or the tensor has more elements than
    /// a managed array can hold.</exception>
    public static HostTensor<T> Create(params ReadOnlySpan<long> shape)
    {
        var layout = TensorLayout.Contiguous(shape);
        if (layout.ElementCount > Array.MaxLength)
        {
            throw new ArgumentException(
                $"A host tensor of shape {TensorLayout.FormatDims(shape)} has {layout.ElementCount} elements; at most {Array.MaxLength} are supported.",
                nameof(shape));
        }

        return new HostTensor<T>(new T[layout.ElementCount], layout);
    }

    /// <summary>The backing memory.</summary>
    public Memory<T> Memory { get; }

    /// <summary>The backing memory as a span.</summary>
    public Span<T> Span => Memory.Span;

    /// <summary>The shape and strides.</summary>
    public TensorLayout Layout { get; }

    /// <summary>Reads the element at a multi-dimensional index (no bounds checks beyond the span's).</summary>
    internal T Get(params ReadOnlySpan<long> index) => Memory.Span[checked((int)Layout.OffsetOf(index))];
}
