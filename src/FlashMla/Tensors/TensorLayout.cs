using System.Globalization;
using System.Text;

namespace FlashMla.Tensors;

/// <summary>
/// The shape and the strides (in elements) of a dense, strided tensor view. Immutable.
/// </summary>
/// <remarks>
/// Element <c>[i0, i1, …]</c> lives at offset <c>Σ i_k · Strides[k]</c> from the start of the
/// underlying memory. Strides must be non-negative; they may be zero (broadcast) or overlap.
/// </remarks>
public sealed class TensorLayout
{
    private readonly long[] _shape;
    private readonly long[] _strides;

    /// <summary>Creates a layout from a shape and strides in elements.</summary>
    /// <param name="shape">The size of each dimension (each ≥ 0).</param>
    /// <param name="strides">The stride of each dimension in elements (each ≥ 0).</param>
    /// <exception cref="ArgumentException">The ranks differ, a size or stride is negative, or the
    /// largest offset does not fit in 64 bits.</exception>
    public TensorLayout(ReadOnlySpan<long> shape, ReadOnlySpan<long> strides)
    {
        if (shape.Length != strides.Length)
        {
            throw new ArgumentException(
                $"Shape and strides must have the same rank; got shape rank {shape.Length} and strides rank {strides.Length}.",
                nameof(strides));
        }

        for (var i = 0; i < shape.Length; i++)
        {
            if (shape[i] < 0)
            {
                throw new ArgumentException($"Dimension {i} has negative size {shape[i]}.", nameof(shape));
            }

            if (strides[i] < 0)
            {
                throw new ArgumentException($"Dimension {i} has negative stride {strides[i]}.", nameof(strides));
            }
        }

        _shape = shape.ToArray();
        _strides = strides.ToArray();

        long count = 1;
        long maxOffset = 0;
        var empty = false;
        try
        {
            for (var i = 0; i < _shape.Length; i++)
            {
                if (_shape[i] == 0)
                {
                    empty = true;
                }
            }

            for (var i = 0; i < _shape.Length; i++)
            {
                count = checked(count * _shape[i]);
                if (!empty)
                {
                    maxOffset = checked(maxOffset + checked((_shape[i] - 1) * _strides[i]));
                }
            }

            RequiredLength = empty ? 0 : checked(maxOffset + 1);
        }
        catch (OverflowException ex)
        {
            throw new ArgumentException($"The layout {Describe(_shape, _strides)} addresses more than 2^63 elements.", nameof(shape), ex);
        }

        ElementCount = count;
        IsContiguous = ComputeIsContiguous(_shape, _strides, empty);
    }

    /// <summary>Creates a row-major contiguous layout (last dimension has stride 1).</summary>
    /// <param name="shape">The size of each dimension (each ≥ 0).</param>
    /// <returns>The layout.</returns>
    public static TensorLayout Contiguous(params ReadOnlySpan<long> shape)
    {
        Span<long> strides = shape.Length <= 16 ? stackalloc long[shape.Length] : new long[shape.Length];
        long stride = 1;
        for (var i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = stride;
            stride = shape[i] > 0 ? SaturatingMultiply(stride, shape[i]) : stride;
        }

        return new TensorLayout(shape, strides);
    }

    /// <summary>The number of dimensions.</summary>
    public int Rank => _shape.Length;

    /// <summary>The size of each dimension.</summary>
    public ReadOnlySpan<long> Shape => _shape;

    /// <summary>The stride of each dimension, in elements.</summary>
    public ReadOnlySpan<long> Strides => _strides;

    /// <summary>The number of elements (the product of the shape; 1 for rank 0).</summary>
    public long ElementCount { get; }

    /// <summary>
    /// The minimum length of the underlying memory: one more than the largest reachable offset, or
    /// 0 when the tensor has no elements.
    /// </summary>
    public long RequiredLength { get; }

    /// <summary>
    /// Whether the layout is row-major contiguous (strides of size-1 dimensions are ignored, and an
    /// empty tensor is contiguous).
    /// </summary>
    public bool IsContiguous { get; }

    /// <summary>Formats the layout as <c>[2, 1, 128, 576] strides [73728, 73728, 576, 1]</c>.</summary>
    /// <returns>The description.</returns>
    public override string ToString() => Describe(_shape, _strides);

    /// <summary>The offset of an element from the start of memory.</summary>
    internal long OffsetOf(params ReadOnlySpan<long> index)
    {
        long offset = 0;
        for (var i = 0; i < index.Length; i++)
        {
            offset += index[i] * _strides[i];
        }

        return offset;
    }

    /// <summary>Formats a shape as <c>[a, b, c]</c>.</summary>
    internal static string FormatDims(ReadOnlySpan<long> dims)
    {
        var builder = new StringBuilder("[");
        for (var i = 0; i < dims.Length; i++)
        {
            if (i > 0)
            {
                builder.Append(", ");
            }

            builder.Append(dims[i].ToString(CultureInfo.InvariantCulture));
        }

        return builder.Append(']').ToString();
    }

    private static string Describe(long[] shape, long[] strides) => $"{FormatDims(shape)} strides {FormatDims(strides)}";

    private static bool ComputeIsContiguous(long[] shape, long[] strides, bool empty)
    {
        if (empty)
        {
            return true;
        }

        long expected = 1;
        for (var i = shape.Length - 1; i >= 0; i--)
        {
            if (shape[i] != 1)
            {
                if (strides[i] != expected)
                {
                    return false;
                }

                expected *= shape[i];
            }
        }

        return true;
    }

    private static long SaturatingMultiply(long a, long b)
    {
        try
        {
            return checked(a * b);
        }
        catch (OverflowException)
        {
            return long.MaxValue;
        }
    }
}
