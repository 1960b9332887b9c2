namespace FlashMla.Cuda;

/// <summary>
/// Device memory for <see cref="Length"/> elements of <typeparamref name="T"/>, allocated with
/// <c>cuMemAlloc_v2</c> and freed on dispose (or by the finalizer). Allocations are at least
/// 256-byte aligned.
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
/// <remarks>
/// <para>
/// Synchronous copies (<see cref="CopyFrom(ReadOnlySpan{T}, long)"/>, <see cref="CopyTo(Span{T}, long)"/>)
/// run on the legacy default stream: they start after the work already queued on blocking
/// streams and return once the data has arrived.
/// </para>
/// <para>
/// Stream-ordered copies from host spans follow the driver's rules for pageable memory: a
/// host-to-device copy stages the span before returning, so the span may be reused at once;
/// <see cref="CopyTo(Span{T}, CudaStream, long)"/> waits for the stream, so the data is in the span
/// when it returns. For truly asynchronous transfers use pinned memory with the pointer overloads.
/// </para>
/// </remarks>
public sealed unsafe class DeviceBuffer<T> : IDisposable
    where T : unmanaged
{
    private readonly CudaOwnedHandle _owned;

    private DeviceBuffer(CudaContext context, CudaOwnedHandle owned, long length)
    {
        Context = context;
        _owned = owned;
        Length = length;
    }

    /// <summary>The context.</summary>
    public CudaContext Context { get; }

    /// <summary>The number of elements.</summary>
    public long Length { get; }

    /// <summary>The size in bytes.</summary>
    public long SizeInBytes => Length * sizeof(T);

    /// <summary>Whether the memory was freed.</summary>
    public bool IsDisposed => _owned.IsClosed;

    /// <summary>The device address (0 for an empty buffer).</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public ulong Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_owned.IsClosed, this);
            return (ulong)_owned.Value;
        }
    }

    /// <summary>Allocates uninitialized device memory for <paramref name="length"/> elements.</summary>
    /// <param name="context">The context.</param>
    /// <param name="length">The element count (0 gives an empty buffer with address 0).</param>
    /// <returns>The buffer.</returns>
    /// <exception cref="CudaException">Out of memory, say.</exception>
    public static DeviceBuffer<T> Allocate(CudaContext context, long length)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        var bytes = checked(length * sizeof(T));
        var owned = new CudaOwnedHandle(context, CudaHandleKind.DeviceMemory);
        try
        {
            if (bytes > 0)
            {
                context.Enter();
                ulong ptr;
                var r = context.Api.cuMemAlloc(&ptr, (nuint)bytes);
                if (r != CudaResult.Success)
                {
                    throw context.Driver.Error(r, $"cuMemAlloc_v2({bytes} bytes)");
                }

                owned.Set((nint)ptr);
            }

            return new DeviceBuffer<T>(context, owned, length);
        }
        catch
        {
            owned.Dispose();
            throw;
        }
    }

    /// <summary>Allocates device memory and copies <paramref name="source"/> into it.</summary>
    /// <param name="context">The context.</param>
    /// <param name="source">The data.</param>
    /// <returns>The buffer.</returns>
    public static DeviceBuffer<T> FromHost(CudaContext context, ReadOnlySpan<T> source)
    {
        var buffer = Allocate(context, source.Length);
        try
        {
            buffer.CopyFrom(source);
            return buffer;
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>Copies host data into the buffer and waits until it has arrived (legacy stream).</summary>
    /// <param name="source">The data.</param>
    /// <param name="destinationOffset">The first element written.</param>
    public void CopyFrom(ReadOnlySpan<T> source, long destinationOffset = 0)
    {
        var dst = Address(destinationOffset, source.Length);
        if (source.IsEmpty)
        {
            return;
        }

        Context.Enter();
        fixed (T* src = source)
        {
            Context.Check(Context.Api.cuMemcpyHtoD(dst, src, (nuint)((long)source.Length * sizeof(T))));
        }

        // For pageable memory the copy may still be in flight on the legacy stream; finish it so
        // that work on non-blocking streams sees the data.
        Context.Check(Context.Api.cuStreamSynchronize(0));
    }

    /// <summary>Copies the buffer into host memory (legacy stream, after work queued on blocking streams).</summary>
    /// <param name="destination">The host span.</param>
    /// <param name="sourceOffset">The first element read.</param>
    public void CopyTo(Span<T> destination, long sourceOffset = 0)
    {
        var src = Address(sourceOffset, destination.Length);
        if (destination.IsEmpty)
        {
            return;
        }

        Context.Enter();
        fixed (T* dst = destination)
        {
            Context.Check(Context.Api.cuMemcpyDtoH(dst, src, (nuint)((long)destination.Length * sizeof(T))));
        }
    }

    /// <summary>
    /// Enqueues a host-to-device copy on <paramref name="stream"/>. The span (pageable memory) is
    /// staged by the driver before the call returns and may be reused at once.
    /// </summary>
    /// <param name="source">The data.</param>
    /// <param name="stream">The stream.</param>
    /// <param name="destinationOffset">The first element written.</param>
    public void CopyFromAsync(ReadOnlySpan<T> source, CudaStream stream, long destinationOffset = 0)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var dst = Address(destinationOffset, source.Length);
        if (source.IsEmpty)
        {
            return;
        }

        var s = stream.Handle;
        Context.Enter();
        fixed (T* src = source)
        {
            Context.Check(Context.Api.cuMemcpyHtoDAsync(dst, src, (nuint)((long)source.Length * sizeof(T)), s));
        }
    }

    /// <summary>
    /// Copies the buffer to host memory in <paramref name="stream"/>'s order and waits for the
    /// stream, so the data is in <paramref name="destination"/> when this returns.
    /// </summary>
    /// <param name="destination">The host span.</param>
    /// <param name="stream">The stream.</param>
    /// <param name="sourceOffset">The first element read.</param>
    public void CopyTo(Span<T> destination, CudaStream stream, long sourceOffset = 0)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var src = Address(sourceOffset, destination.Length);
        if (destination.IsEmpty)
        {
            stream.Synchronize();
            return;
        }

        var s = stream.Handle;
        Context.Enter();
        fixed (T* dst = destination)
        {
            Context.Check(Context.Api.cuMemcpyDtoHAsync(dst, src, (nuint)((long)destination.Length * sizeof(T)), s));
            Context.Check(Context.Api.cuStreamSynchronize(s));
        }
    }

    /// <summary>
    /// Enqueues a host-to-device copy from pinned (page-locked) host memory. Fully asynchronous:
    /// the memory must stay valid and unchanged until the stream reaches the copy.
    /// </summary>
    /// <param name="source">The host address.</param>
    /// <param name="count">The element count.</param>
    /// <param name="stream">The stream.</param>
    /// <param name="destinationOffset">The first element written.</param>
    public void CopyFromAsync(nint source, long count, CudaStream stream, long destinationOffset = 0)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var dst = Address(destinationOffset, count);
        if (count == 0)
        {
            return;
        }

        var s = stream.Handle;
        Context.Enter();
        Context.Check(Context.Api.cuMemcpyHtoDAsync(dst, (void*)source, (nuint)(count * sizeof(T)), s));
    }

    /// <summary>
    /// Enqueues a device-to-host copy into pinned (page-locked) host memory. Fully asynchronous:
    /// the data is there once the stream has passed the copy.
    /// </summary>
    /// <param name="destination">The host address.</param>
    /// <param name="count">The element count.</param>
    /// <param name="stream">The stream.</param>
    /// <param name="sourceOffset">The first element read.</param>
    public void CopyToAsync(nint destination, long count, CudaStream stream, long sourceOffset = 0)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var src = Address(sourceOffset, count);
        if (count == 0)
        {
            return;
        }

        var s = stream.Handle;
        Context.Enter();
        Context.Check(Context.Api.cuMemcpyDtoHAsync((void*)destination, src, (nuint)(count * sizeof(T)), s));
    }

    /// <summary>Enqueues a device-to-device copy from another buffer.</summary>
    /// <param name="source">The source buffer.</param>
    /// <param name="stream">The stream.</param>
    /// <param name="count">Elements to copy; −1 for all of <paramref name="source"/>.</param>
    /// <param name="sourceOffset">The first element read.</param>
    /// <param name="destinationOffset">The first element written.</param>
    public void CopyFromAsync(DeviceBuffer<T> source, CudaStream stream, long count = -1, long sourceOffset = 0, long destinationOffset = 0)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(stream);
        if (count < 0)
        {
            count = source.Length - sourceOffset;
        }

        var src = source.Address(sourceOffset, count);
        var dst = Address(destinationOffset, count);
        if (count == 0)
        {
            return;
        }

        var s = stream.Handle;
        Context.Enter();
        Context.Check(Context.Api.cuMemcpyDtoDAsync(dst, src, (nuint)(count * sizeof(T)), s));
    }

    /// <summary>Enqueues a fill of every byte with <paramref name="value"/> (<c>cuMemsetD8Async</c>).</summary>
    /// <param name="value">The byte.</param>
    /// <param name="stream">The stream.</param>
    public void MemsetAsync(byte value, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (Length == 0)
        {
            return;
        }

        var ptr = Pointer;
        var s = stream.Handle;
        Context.Enter();
        Context.Check(Context.Api.cuMemsetD8Async(ptr, value, (nuint)SizeInBytes, s));
    }

    /// <summary>
    /// Enqueues a fill of every 32-bit word with <paramref name="value"/> (<c>cuMemsetD32Async</c>).
    /// The buffer's size must be a multiple of 4 bytes.
    /// </summary>
    /// <param name="value">The word.</param>
    /// <param name="stream">The stream.</param>
    public void MemsetD32Async(uint value, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (SizeInBytes % 4 != 0)
        {
            throw new InvalidOperationException($"MemsetD32Async needs a size that is a multiple of 4 bytes; the buffer has {SizeInBytes}.");
        }

        if (Length == 0)
        {
            return;
        }

        var ptr = Pointer;
        var s = stream.Handle;
        Context.Enter();
        Context.Check(Context.Api.cuMemsetD32Async(ptr, value, (nuint)(SizeInBytes / 4), s));
    }

    /// <summary>Copies the whole buffer to a new array (synchronous).</summary>
    /// <returns>The elements.</returns>
    public T[] ToArray()
    {
        var result = new T[checked((int)Length)];
        CopyTo(result);
        return result;
    }

    /// <summary>Frees the memory (the driver waits for work that may use it). Idempotent.</summary>
    public void Dispose() => _owned.Dispose();

    /// <summary>Formats as "DeviceBuffer&lt;Single&gt;[1024] at 0x…".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => $"DeviceBuffer<{typeof(T).Name}>[{Length}] at 0x{(ulong)_owned.Value:x}";

    /// <summary>The address of element <paramref name="offset"/>, checking that <paramref name="count"/> elements fit.</summary>
    internal ulong Address(long offset, long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (offset > Length - count)
        {
            throw new ArgumentOutOfRangeException(nameof(count), $"Elements [{offset}, {offset + count}) do not fit in a buffer of {Length}.");
        }

        return Pointer + (ulong)(offset * sizeof(T));
    }
}
