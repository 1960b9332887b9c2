namespace FlashMla.Cuda;

/// <summary>A CUDA event, for timing and cross-stream ordering.</summary>
public sealed unsafe class CudaEvent : IDisposable
{
    private readonly CudaOwnedHandle _owned;

    private CudaEvent(CudaContext context, CudaOwnedHandle owned, bool timing)
    {
        Context = context;
        _owned = owned;
        HasTiming = timing;
    }

    /// <summary>The context.</summary>
    public CudaContext Context { get; }

    /// <summary>Whether the event records timestamps.</summary>
    public bool HasTiming { get; }

    /// <summary>The <c>CUevent</c> handle.</summary>
    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_owned.IsClosed, this);
            return _owned.Value;
        }
    }

    /// <summary>Creates an event (<c>cuEventCreate</c>).</summary>
    /// <param name="context">The context.</param>
    /// <param name="timing">False for <c>CU_EVENT_DISABLE_TIMING</c> (cheaper, no <see cref="ElapsedMilliseconds"/>).</param>
    /// <param name="blockingSync">True for <c>CU_EVENT_BLOCKING_SYNC</c> (the waiting thread sleeps instead of spinning).</param>
    /// <returns>The event.</returns>
    public static CudaEvent Create(CudaContext context, bool timing = true, bool blockingSync = false)
    {
        ArgumentNullException.ThrowIfNull(context);
        var owned = new CudaOwnedHandle(context, CudaHandleKind.Event);
        try
        {
            context.Enter();
            var flags = (timing ? 0 : Native.CuConstants.EventDisableTiming) | (blockingSync ? Native.CuConstants.EventBlockingSync : 0);
            nint e;
            context.Check(context.Api.cuEventCreate(&e, flags));
            owned.Set(e);
            return new CudaEvent(context, owned, timing);
        }
        catch
        {
            owned.Dispose();
            throw;
        }
    }

    /// <summary>Milliseconds between two recorded, completed timing events (<c>cuEventElapsedTime</c>); resolution about 0.5 µs.</summary>
    /// <param name="start">The earlier event.</param>
    /// <param name="end">The later event.</param>
    /// <returns>The elapsed time in milliseconds.</returns>
    public static float ElapsedMilliseconds(CudaEvent start, CudaEvent end)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(end);
        var s = start.Handle;
        var e = end.Handle;
        start.Context.Enter();
        float ms;
        start.Context.Check(start.Context.Api.cuEventElapsedTime(&ms, s, e));
        return ms;
    }

    /// <summary>Records the event on a stream (<c>cuEventRecord</c>).</summary>
    /// <param name="stream">The stream.</param>
    public void Record(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var h = Handle;
        var s = stream.Handle;
        Context.Enter();
        Context.Check(Context.Api.cuEventRecord(h, s));
    }

    /// <summary>Waits for the work before the recorded point to finish (<c>cuEventSynchronize</c>).</summary>
    public void Synchronize()
    {
        var h = Handle;
        Context.Enter();
        Context.Check(Context.Api.cuEventSynchronize(h));
    }

    /// <summary>Whether the recorded work has finished (<c>cuEventQuery</c>).</summary>
    /// <returns>True when complete (or never recorded).</returns>
    public bool IsComplete()
    {
        var h = Handle;
        Context.Enter();
        var r = Context.Api.cuEventQuery(h);
        if (r == CudaResult.NotReady)
        {
            return false;
        }

        Context.Check(r, "cuEventQuery");
        return true;
    }

    /// <summary>Destroys the event. Idempotent.</summary>
    public void Dispose() => _owned.Dispose();
}
