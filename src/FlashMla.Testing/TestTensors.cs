using System.Runtime.CompilerServices;
using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Testing;

/// <summary>
/// Host tensors for checking decoders: exact widening to double, padded layouts, poisoning, reading
/// back, and checks that a call wrote exactly its view (they throw <see cref="CheckFailedException"/>).
/// </summary>
public static class TestTensors
{
    /// <summary>A NaN bit pattern (valid for both bf16 and fp16) that marks "never written".</summary>
    public const ushort PoisonBits16 = 0x7FF1;

    /// <summary>A float NaN bit pattern that marks "never written".</summary>
    public const uint PoisonBits32 = 0x7FC0_BEEF;

    /// <summary>The poison value of a 16-bit element type or float.</summary>
    /// <typeparam name="T"><see cref="BFloat16"/>, <see cref="Half"/> or <see cref="float"/>.</typeparam>
    /// <returns>The poison value.</returns>
    public static T Poison<T>()
        where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            var value = BitConverter.UInt32BitsToSingle(PoisonBits32);
            return Unsafe.As<float, T>(ref value);
        }

        var bits = PoisonBits16;
        return Unsafe.As<ushort, T>(ref bits);
    }

    /// <summary>Whether a value has exactly the poison bit pattern.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="value">The value.</param>
    /// <returns>Whether it is poison.</returns>
    public static bool IsPoison<T>(T value)
        where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            return BitConverter.SingleToUInt32Bits(Unsafe.As<T, float>(ref value)) == PoisonBits32;
        }

        return Unsafe.As<T, ushort>(ref value) == PoisonBits16;
    }

    /// <summary>Exact widening to double, written independently of the library's conversions.</summary>
    /// <typeparam name="T"><see cref="BFloat16"/>, <see cref="Half"/> or <see cref="float"/>.</typeparam>
    /// <param name="value">The value.</param>
    /// <returns>The value as a double.</returns>
    public static double ToDouble<T>(T value)
        where T : unmanaged
    {
        if (typeof(T) == typeof(BFloat16))
        {
            return BitConverter.UInt32BitsToSingle((uint)Unsafe.As<T, ushort>(ref value) << 16);
        }

        if (typeof(T) == typeof(Half))
        {
            return (double)Unsafe.As<T, Half>(ref value);
        }

        if (typeof(T) == typeof(float))
        {
            return Unsafe.As<T, float>(ref value);
        }

        throw new NotSupportedException(typeof(T).Name);
    }

    /// <summary>Rounds a double to the element type (nearest even), with the types' own conversions.</summary>
    /// <typeparam name="T"><see cref="BFloat16"/>, <see cref="Half"/> or <see cref="float"/>.</typeparam>
    /// <param name="value">The value.</param>
    /// <returns>The rounded value.</returns>
    public static T FromDouble<T>(double value)
        where T : unmanaged =>
        typeof(T) == typeof(BFloat16) ? Reinterpret<BFloat16, T>((BFloat16)value)
        : typeof(T) == typeof(Half) ? Reinterpret<Half, T>((Half)value)
        : typeof(T) == typeof(float) ? Reinterpret<float, T>((float)value)
        : throw new NotSupportedException(typeof(T).Name);

    /// <summary>"bf16", "fp16" or the type name.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <returns>The short name.</returns>
    public static string DTypeName<T>()
        where T : unmanaged =>
        ElementTypes.TryOf<T>()?.ShortName() ?? typeof(T).Name;

    /// <summary>The memory offset of an element: Σ index·stride.</summary>
    /// <param name="layout">The layout.</param>
    /// <param name="index">The multi-dimensional index.</param>
    /// <returns>The offset.</returns>
    public static long OffsetOf(TensorLayout layout, params ReadOnlySpan<long> index)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var strides = layout.Strides;
        long offset = 0;
        for (var i = 0; i < index.Length; i++)
        {
            offset += index[i] * strides[i];
        }

        return offset;
    }

    /// <summary>
    /// A non-contiguous layout in the style of FlashMLA's <c>non_contiguousify</c>: the tensor is a
    /// view into a larger one whose last dimension is <paramref name="lastPad"/> longer and whose
    /// other dimensions are <paramref name="otherPad"/> longer. The last stride stays 1.
    /// </summary>
    /// <param name="shape">The view's shape.</param>
    /// <param name="lastPad">Extra elements per row.</param>
    /// <param name="otherPad">Extra entries in each other dimension.</param>
    /// <returns>The layout.</returns>
    public static TensorLayout Padded(ReadOnlySpan<long> shape, long lastPad = 128, long otherPad = 1)
    {
        var strides = new long[shape.Length];
        long stride = 1;
        for (var i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = stride;
            stride *= shape[i] + (i == shape.Length - 1 ? lastPad : otherPad);
        }

        return new TensorLayout(shape, strides);
    }

    /// <summary>A tensor with the given layout over fresh memory filled with <paramref name="fill"/>.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="layout">The layout.</param>
    /// <param name="fill">The value of every element, including padding.</param>
    /// <returns>The tensor.</returns>
    public static HostTensor<T> Allocate<T>(TensorLayout layout, T fill)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(layout);
        var memory = new T[layout.RequiredLength];
        memory.AsSpan().Fill(fill);
        return new HostTensor<T>(memory, layout);
    }

    /// <summary>A poisoned tensor, contiguous or padded.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="padded">Whether to use <see cref="Padded"/>.</param>
    /// <param name="shape">The shape.</param>
    /// <returns>The tensor.</returns>
    public static HostTensor<T> AllocatePoisoned<T>(bool padded, params long[] shape)
        where T : unmanaged =>
        Allocate(padded ? Padded(shape) : TensorLayout.Contiguous(shape), Poison<T>());

    /// <summary>Calls <paramref name="action"/> with (logical row-major index, memory offset) for every element.</summary>
    /// <param name="layout">The layout.</param>
    /// <param name="action">The callback.</param>
    public static void ForEachOffset(TensorLayout layout, Action<long, long> action)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(action);
        var rank = layout.Rank;
        var count = layout.ElementCount;
        var index = new long[rank];
        var shape = layout.Shape.ToArray();
        var strides = layout.Strides.ToArray();
        long offset = 0;
        for (long logical = 0; logical < count; logical++)
        {
            action(logical, offset);
            for (var k = rank - 1; k >= 0; k--)
            {
                index[k]++;
                offset += strides[k];
                if (index[k] < shape[k])
                {
                    break;
                }

                offset -= strides[k] * shape[k];
                index[k] = 0;
            }
        }
    }

    /// <summary>Reads a tensor into a row-major array of doubles.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="tensor">The tensor.</param>
    /// <returns>The values in logical order.</returns>
    public static double[] ToDoubleArray<T>(HostTensor<T> tensor)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var result = new double[tensor.Layout.ElementCount];
        var span = tensor.Memory;
        ForEachOffset(tensor.Layout, (logical, offset) => result[logical] = ToDouble(span.Span[(int)offset]));
        return result;
    }

    /// <summary>Copies the whole backing memory (including padding), e.g. to check it later.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="tensor">The tensor.</param>
    /// <returns>A copy of the memory.</returns>
    public static T[] Snapshot<T>(HostTensor<T> tensor)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return tensor.Span.ToArray();
    }

    /// <summary>
    /// Asserts every element of the view was written (is no longer poison) and every element of the
    /// backing memory outside the view is still poison.
    /// </summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="tensor">The output tensor, poisoned before the call.</param>
    /// <param name="what">The tensor's name for messages.</param>
    /// <param name="context">The case description.</param>
    /// <exception cref="CheckFailedException">An element of the view is poison, or memory outside it is not.</exception>
    public static void AssertFullyWrittenWithinView<T>(HostTensor<T> tensor, string what, string context)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var inView = new bool[tensor.Span.Length];
        var firstUnwritten = -1L;
        var unwritten = 0L;
        var memory = tensor.Memory;
        ForEachOffset(tensor.Layout, (logical, offset) =>
        {
            inView[offset] = true;
            if (IsPoison(memory.Span[(int)offset]))
            {
                unwritten++;
                if (firstUnwritten < 0)
                {
                    firstUnwritten = logical;
                }
            }
        });

        if (unwritten > 0)
        {
            throw new CheckFailedException($"{what}: {unwritten} element(s) were never written; the first at logical index {firstUnwritten} ({FormatIndex(tensor.Layout.Shape, firstUnwritten)}). Case: {context}");
        }

        var span = tensor.Span;
        for (var i = 0; i < span.Length; i++)
        {
            if (!inView[i] && !IsPoison(span[i]))
            {
                throw new CheckFailedException($"{what}: memory offset {i} outside the tensor view was overwritten. Case: {context}");
            }
        }
    }

    /// <summary>Asserts the whole backing memory still has the poison pattern.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="tensor">The tensor.</param>
    /// <param name="what">The tensor's name for messages.</param>
    /// <exception cref="CheckFailedException">Some element is no longer poison.</exception>
    public static void AssertUntouched<T>(HostTensor<T> tensor, string what)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var span = tensor.Span;
        for (var i = 0; i < span.Length; i++)
        {
            if (!IsPoison(span[i]))
            {
                throw new CheckFailedException($"{what} was written at memory offset {i} although the call failed validation.");
            }
        }
    }

    /// <summary>Formats a logical row-major index as [i0, i1, …].</summary>
    /// <param name="shape">The shape.</param>
    /// <param name="logical">The logical index.</param>
    /// <returns>The multi-index.</returns>
    public static string FormatIndex(ReadOnlySpan<long> shape, long logical)
    {
        var index = new long[shape.Length];
        for (var k = shape.Length - 1; k >= 0; k--)
        {
            if (shape[k] > 0)
            {
                index[k] = logical % shape[k];
                logical /= shape[k];
            }
        }

        return "[" + string.Join(", ", index) + "]";
    }

    private static TTo Reinterpret<TFrom, TTo>(TFrom value)
        where TFrom : unmanaged
        where TTo : unmanaged => Unsafe.As<TFrom, TTo>(ref value);
}
