namespace FlashMla.Cuda;

/// <summary>
/// A CUDA stream: an ordered queue of device work. Owning streams are destroyed on dispose;
/// streams wrapped with <see cref="FromHandle"/> are not.
/// </summary>
/// <remarks>
/// Streams made by <see cref="Create"/> are blocking streams (<c>CU_STREAM_DEFAULT</c>) unless
/// <c>nonBlocking</c> is set: they synchronize with the legacy default stream, which the
/// synchronous copies of <see cref="DeviceBuffer{T}"/> use. Do not use the legacy stream (the
/// synchronous copies) from any thread while a blocking stream is being captured into a graph.
/// </remarks>
public sealed unsafe class CudaStream : IDisposable
{
    private readonly CudaOwnedHandle? _owned;
    private readonly nint _borrowed;

    private CudaStream(CudaContext context, CudaOwnedHandle? owned, nint borrowed, bool nonBlocking)
    {
        Context = context;
        _owned = owned;
        _borrowed = borrowed;
        IsNonBlocking = nonBlocking;
    }

    /// <summary>The context the stream belongs to.</summary>
    public CudaContext Context { get; }

    /// <summary>Whether the stream was created with <c>CU_STREAM_NON_BLOCKING</c>.</summary>
    public bool IsNonBlocking { get; }

    /// <summary>Whether this object owns (and destroys) the stream.</summary>
    public bool IsOwned => _owned is not null;

    /// <summary>The <c>CUstream</c> handle.</summary>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    public nint Handle
    {
        get
        {
            if (_owned is null)
            {
                return _borrowed;
            }

            ObjectDisposedException.ThrowIf(_owned.IsClosed, this);
            return _owned.Value;
        }
    }

    /// <summary>Creates a stream (<c>cuStreamCreate</c>).</summary>
    /// <param name="context">The context.</param>
    /// <param name="nonBlocking">True for <c>CU_STREAM_NON_BLOCKING</c> (no implicit synchronization with the legacy default stream).</param>
    /// <returns>The stream.</returns>
    public static CudaStream Create(CudaContext context, bool nonBlocking = false)
    {
        ArgumentNullException.ThrowIfNull(context);
        var owned = new CudaOwnedHandle(context, CudaHandleKind.Stream);
        try
        {
            context.Enter();
            nint stream;
            context.Check(context.Api.cuStreamCreate(&stream, nonBlocking ? Native.CuConstants.StreamNonBlocking : Native.CuConstants.StreamDefault));
            owned.Set(stream);
            return new CudaStream(context, owned, 0, nonBlocking);
        }
        catch
        {
            owned.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Wraps an existing stream handle without taking ownership (a stream from PyTorch, say).
    /// Handle 0 is the legacy default stream.
    /// </summary>
    /// <param name="context">The context the stream belongs to.</param>
    /// <param name="handle">The <c>CUstream</c>.</param>
    /// <returns>A non-owning wrapper; disposing it does nothing.</returns>
    public static CudaStream FromHandle(CudaContext context, nint handle)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new CudaStream(context, null, handle, nonBlocking: false);
    }

    /// <summary>Waits until all work queued on the stream is done (<c>cuStreamSynchronize</c>).</summary>
    /// <exception cref="CudaException">Queued work failed.</exception>
    public void Synchronize()
    {
        var h = Handle;
        Context.Enter();
        Context.Check(Context.Api.cuStreamSynchronize(h));
    }

    /// <summary>Whether all queued work is done (<c>cuStreamQuery</c>), without waiting.</summary>
    /// <returns>True when idle.</returns>
    /// <exception cref="CudaException">Queued work failed.</exception>
    public bool IsIdle()
    {
        var h = Handle;
        Context.Enter();
        var r = Context.Api.cuStreamQuery(h);
        if (r == CudaResult.NotReady)
        {
            return false;
        }

        Context.Check(r, "cuStreamQuery");
        return true;
    }

    /// <summary>Makes later work on this stream wait for <paramref name="cudaEvent"/> (<c>cuStreamWaitEvent</c>).</summary>
    /// <param name="cudaEvent">The event.</param>
    public void Wait(CudaEvent cudaEvent)
    {
        ArgumentNullException.ThrowIfNull(cudaEvent);
        var h = Handle;
        Context.Enter();
        Context.Check(Context.Api.cuStreamWaitEvent(h, cudaEvent.Handle, 0));
    }

    /// <summary>Whether the stream is currently being captured into a graph.</summary>
    /// <returns>True while capturing (also when the capture was invalidated but not ended).</returns>
    public bool IsCapturing()
    {
        var h = Handle;
        Context.Enter();
        int status;
        Context.Check(Context.Api.cuStreamIsCapturing(h, &status));
        return status != 0;
    }

    /// <summary>Destroys an owned stream (after its queued work completes, per the driver). Idempotent.</summary>
    public void Dispose() => _owned?.Dispose();
}
