using System.Buffers;

namespace FlashMla.Cuda;

/// <summary>
/// Page-locked host memory for <see cref="Length"/> elements of <typeparamref name="T"/>,
/// allocated with <c>cuMemHostAlloc</c> (flags 0) and freed with <c>cuMemFreeHost</c> on dispose
/// (or by the finalizer). Copies between it and device memory are truly asynchronous: the driver
/// reads or writes the memory when the stream reaches the copy, so the host must not change it
/// (or read it) until then; record an event after the copy and wait for it before reusing the
/// memory.
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
public sealed unsafe class PinnedHostBuffer<T> : IDisposable
    where T : unmanaged
{
    private readonly CudaOwnedHandle _owned;
    private readonly PinnedMemoryManager _memory;

    private PinnedHostBuffer(CudaContext context, CudaOwnedHandle owned, int length)
    {
        Context = context;
        _owned = owned;
        Length = length;
        _memory = new PinnedMemoryManager(this);
    }

    /// <summary>The context.</summary>
    public CudaContext Context { get; }

    /// <summary>The number of elements.</summary>
    public int Length { get; }

    /// <summary>The size in bytes.</summary>
    public long SizeInBytes => (long)Length * sizeof(T);

    /// <summary>Whether the memory was freed.</summary>
    public bool IsDisposed => _owned.IsClosed;

    /// <summary>The host address (0 for an empty buffer).</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public nint Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_owned.IsClosed, this);
            return _owned.Value;
        }
    }

    /// <summary>The memory as a span.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public Span<T> Span => Length == 0 ? [] : new Span<T>((void*)Pointer, Length);

    /// <summary>
    /// The memory as a <see cref="Memory{T}"/> (for host tensors over it); valid until the buffer is
    /// disposed, after which its span throws <see cref="ObjectDisposedException"/>.
    /// </summary>
    public Memory<T> Memory => _memory.Memory;

    /// <summary>Allocates uninitialized page-locked memory for <paramref name="length"/> elements.</summary>
    /// <param name="context">The context.</param>
    /// <param name="length">The element count (0 gives an empty buffer with address 0).</param>
    /// <returns>The buffer.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="context"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative.</exception>
    /// <exception cref="CudaException">The driver could not allocate the memory.</exception>
    public static PinnedHostBuffer<T> Allocate(CudaContext context, int length)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        var bytes = (long)length * sizeof(T);
        var owned = new CudaOwnedHandle(context, CudaHandleKind.PinnedHostMemory);
        try
        {
            if (bytes > 0)
            {
                context.Enter();
                void* ptr;
                var r = context.Api.cuMemHostAlloc(&ptr, (nuint)bytes, 0);
                if (r != CudaResult.Success)
                {
                    throw context.Driver.Error(r, $"cuMemHostAlloc({bytes} bytes)");
                }

                owned.Set((nint)ptr);
            }

            return new PinnedHostBuffer<T>(context, owned, length);
        }
        catch
        {
            owned.Dispose();
            throw;
        }
    }

    /// <summary>Frees the memory. Idempotent.</summary>
    public void Dispose() => _owned.Dispose();

    /// <summary>Formats as "PinnedHostBuffer&lt;Int32&gt;[1024] at 0x…".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => $"PinnedHostBuffer<{typeof(T).Name}>[{Length}] at 0x{(ulong)_owned.Value:x}";

    /// <summary>The buffer's memory for <see cref="Memory{T}"/>: already pinned, so pinning is free.</summary>
    private sealed class PinnedMemoryManager(PinnedHostBuffer<T> buffer) : MemoryManager<T>
    {
        public override Span<T> GetSpan() => buffer.Span;

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, buffer.Length);
            return new MemoryHandle((T*)buffer.Pointer + elementIndex);
        }

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
