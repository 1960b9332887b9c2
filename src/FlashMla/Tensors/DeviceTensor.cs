using FlashMla.Cuda;

namespace FlashMla.Tensors;

/// <summary>
/// A strided tensor view over device memory: a device address plus a <see cref="TensorLayout"/>.
/// It does not own the memory, so pointers from other libraries (TorchSharp, ONNX Runtime) can be
/// wrapped; the memory must stay allocated while the view is used.
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
/// <remarks>
/// The copy and fill methods work on the memory the layout spans: elements 0 …
/// <see cref="TensorLayout.RequiredLength"/> − 1 from <see cref="Pointer"/>, gaps between strided
/// rows included, exactly as a <see cref="HostTensor{T}"/> of the same layout spans its memory.
/// They are enqueued on the given stream, in its context.
/// </remarks>
public sealed unsafe class DeviceTensor<T> : ITensorView
    where T : unmanaged
{
    /// <summary>Wraps a device address with a layout. Nothing but the layout's presence is checked.</summary>
    /// <param name="pointer">The device address of element 0.</param>
    /// <param name="layout">The shape and strides in elements.</param>
    /// <exception cref="ArgumentNullException"><paramref name="layout"/> is null.</exception>
    public DeviceTensor(ulong pointer, TensorLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        Pointer = pointer;
        Layout = layout;
    }

    /// <summary>The device address of element 0.</summary>
    public ulong Pointer { get; }

    /// <summary>The shape and strides in elements.</summary>
    public TensorLayout Layout { get; }

    /// <summary>The number of bytes the layout spans: <see cref="TensorLayout.RequiredLength"/> elements.</summary>
    public long SpanBytes => Layout.RequiredLength * sizeof(T);

    /// <summary>
    /// Enqueues a copy of the first <see cref="TensorLayout.RequiredLength"/> elements of
    /// <paramref name="source"/> (a host buffer laid out like this tensor) to the device. The span
    /// is staged by the driver before the call returns.
    /// </summary>
    /// <param name="source">The host memory.</param>
    /// <param name="stream">The stream.</param>
    public void CopyFromAsync(ReadOnlySpan<T> source, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var length = Layout.RequiredLength;
        if (source.Length < length)
        {
            throw new ArgumentException($"The tensor spans {length} elements ({Layout}); the source has {source.Length}.", nameof(source));
        }

        if (length == 0)
        {
            return;
        }

        var s = stream.Handle;
        stream.Context.Enter();
        fixed (T* src = source)
        {
            stream.Context.Check(stream.Context.Api.cuMemcpyHtoDAsync(Pointer, src, (nuint)SpanBytes, s));
        }
    }

    /// <summary>Enqueues a copy of a host tensor with the same shape and strides.</summary>
    /// <param name="source">The host tensor.</param>
    /// <param name="stream">The stream.</param>
    public void CopyFromAsync(HostTensor<T> source, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(source);
        RequireSameLayout(source.Layout, nameof(source));
        CopyFromAsync(source.Span, stream);
    }

    /// <summary>
    /// Enqueues a copy of <see cref="TensorLayout.RequiredLength"/> elements from page-locked host
    /// memory, starting at element <paramref name="sourceOffset"/>, to the device. Fully
    /// asynchronous: the driver reads the host memory when the stream reaches the copy, so it must
    /// stay unchanged until then.
    /// </summary>
    /// <param name="source">The pinned host buffer, laid out like this tensor from <paramref name="sourceOffset"/>.</param>
    /// <param name="stream">The stream.</param>
    /// <param name="sourceOffset">The first element read.</param>
    /// <exception cref="ArgumentNullException"><paramref name="source"/> or <paramref name="stream"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The tensor's span does not fit in <paramref name="source"/> from <paramref name="sourceOffset"/>.</exception>
    public void CopyFromAsync(PinnedHostBuffer<T> source, CudaStream stream, int sourceOffset = 0)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(stream);
        var length = Layout.RequiredLength;
        if (sourceOffset < 0 || sourceOffset > source.Length - length)
        {
            throw new ArgumentOutOfRangeException(
                nameof(sourceOffset),
                $"The tensor spans {length} elements ({Layout}); elements [{sourceOffset}, {sourceOffset + length}) do not fit in the pinned buffer of {source.Length}.");
        }

        if (length == 0)
        {
            return;
        }

        var s = stream.Handle;
        stream.Context.Enter();
        stream.Context.Check(stream.Context.Api.cuMemcpyHtoDAsync(Pointer, (T*)source.Pointer + sourceOffset, (nuint)SpanBytes, s));
    }

    /// <summary>
    /// Enqueues a device-to-device copy of the memory <paramref name="source"/> spans (elements 0 …
    /// <see cref="TensorLayout.RequiredLength"/> − 1, gaps included) into the memory this tensor
    /// spans; both tensors must have the same shape and strides.
    /// </summary>
    /// <param name="source">The device tensor to copy.</param>
    /// <param name="stream">The stream.</param>
    /// <exception cref="ArgumentNullException"><paramref name="source"/> or <paramref name="stream"/> is null.</exception>
    /// <exception cref="ArgumentException">The layouts differ.</exception>
    public void CopyFromAsync(DeviceTensor<T> source, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(stream);
        if (!source.Layout.Shape.SequenceEqual(Layout.Shape) || !source.Layout.Strides.SequenceEqual(Layout.Strides))
        {
            throw new ArgumentException($"The source's layout {source.Layout} differs from the destination's {Layout}.", nameof(source));
        }

        if (SpanBytes == 0)
        {
            return;
        }

        var s = stream.Handle;
        stream.Context.Enter();
        stream.Context.Check(stream.Context.Api.cuMemcpyDtoDAsync(Pointer, source.Pointer, (nuint)SpanBytes, s));
    }

    /// <summary>
    /// Copies the memory the tensor spans to host memory in <paramref name="stream"/>'s order and
    /// waits for the stream, so the data is in <paramref name="destination"/> when this returns.
    /// </summary>
    /// <param name="destination">Host memory of at least <see cref="TensorLayout.RequiredLength"/> elements.</param>
    /// <param name="stream">The stream.</param>
    public void CopyTo(Span<T> destination, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var length = Layout.RequiredLength;
        if (destination.Length < length)
        {
            throw new ArgumentException($"The tensor spans {length} elements ({Layout}); the destination has {destination.Length}.", nameof(destination));
        }

        var s = stream.Handle;
        stream.Context.Enter();
        if (length > 0)
        {
            fixed (T* dst = destination)
            {
                stream.Context.Check(stream.Context.Api.cuMemcpyDtoHAsync(dst, Pointer, (nuint)SpanBytes, s));
            }
        }

        stream.Context.Check(stream.Context.Api.cuStreamSynchronize(s));
    }

    /// <summary>Copies into a host tensor with the same shape and strides (waits for the stream).</summary>
    /// <param name="destination">The host tensor.</param>
    /// <param name="stream">The stream.</param>
    public void CopyTo(HostTensor<T> destination, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(destination);
        RequireSameLayout(destination.Layout, nameof(destination));
        CopyTo(destination.Span, stream);
    }

    /// <summary>Enqueues a fill of every byte the tensor spans with <paramref name="value"/> (<c>cuMemsetD8Async</c>).</summary>
    /// <param name="value">The byte.</param>
    /// <param name="stream">The stream.</param>
    public void MemsetAsync(byte value, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (SpanBytes == 0)
        {
            return;
        }

        var s = stream.Handle;
        stream.Context.Enter();
        stream.Context.Check(stream.Context.Api.cuMemsetD8Async(Pointer, value, (nuint)SpanBytes, s));
    }

    /// <summary>
    /// Enqueues a fill of every 32-bit word the tensor spans with <paramref name="value"/>
    /// (<c>cuMemsetD32Async</c>); the address must be 4-byte aligned and the span a multiple of 4 bytes.
    /// </summary>
    /// <param name="value">The word.</param>
    /// <param name="stream">The stream.</param>
    public void MemsetD32Async(uint value, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (Pointer % 4 != 0 || SpanBytes % 4 != 0)
        {
            throw new InvalidOperationException($"MemsetD32Async needs a 4-byte aligned address and a multiple of 4 bytes; got 0x{Pointer:x}, {SpanBytes} bytes.");
        }

        if (SpanBytes == 0)
        {
            return;
        }

        var s = stream.Handle;
        stream.Context.Enter();
        stream.Context.Check(stream.Context.Api.cuMemsetD32Async(Pointer, value, (nuint)(SpanBytes / 4), s));
    }

    /// <summary>Formats as "device 0x7f… [2, 1, 128, 576] strides […]".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => $"device 0x{Pointer:x} {Layout}";

    private void RequireSameLayout(TensorLayout other, string paramName)
    {
        if (!other.Shape.SequenceEqual(Layout.Shape) || !other.Strides.SequenceEqual(Layout.Strides))
        {
            throw new ArgumentException($"The host tensor's layout {other} differs from the device tensor's {Layout}.", paramName);
        }
    }
}

/// <summary>Tensor views of a <see cref="DeviceBuffer{T}"/>.</summary>
public static class DeviceBufferTensors
{
    extension<T>(DeviceBuffer<T> buffer)
        where T : unmanaged
    {
        /// <summary>A contiguous row-major view of the buffer with the given shape.</summary>
        /// <param name="shape">The shape; its element count must not exceed the buffer's length.</param>
        /// <returns>The view.</returns>
        public DeviceTensor<T> AsTensor(params long[] shape)
        {
            ArgumentNullException.ThrowIfNull(buffer);
            ArgumentNullException.ThrowIfNull(shape);
            var layout = TensorLayout.Contiguous(shape);
            if (layout.RequiredLength > buffer.Length)
            {
                throw new ArgumentException($"A tensor of shape {layout} needs {layout.RequiredLength} elements; the buffer has {buffer.Length}.", nameof(shape));
            }

            return new DeviceTensor<T>(buffer.Pointer, layout);
        }

        /// <summary>A view of the buffer with an arbitrary layout.</summary>
        /// <param name="layout">The layout; its required length must not exceed the buffer's length.</param>
        /// <returns>The view.</returns>
        public DeviceTensor<T> AsTensor(TensorLayout layout)
        {
            ArgumentNullException.ThrowIfNull(buffer);
            ArgumentNullException.ThrowIfNull(layout);
            if (layout.RequiredLength > buffer.Length)
            {
                throw new ArgumentException($"The layout {layout} needs {layout.RequiredLength} elements; the buffer has {buffer.Length}.", nameof(layout));
            }

            return new DeviceTensor<T>(buffer.Pointer, layout);
        }
    }
}
