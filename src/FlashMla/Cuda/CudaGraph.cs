namespace FlashMla.Cuda;

/// <summary><c>CUstreamCaptureMode</c>: which other driver calls are forbidden during a capture.</summary>
public enum StreamCaptureMode
{
    /// <summary>CU_STREAM_CAPTURE_MODE_GLOBAL: unsafe calls are forbidden on every thread.</summary>
    Global = 0,

    /// <summary>CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: unsafe calls are forbidden on the capturing thread only.</summary>
    ThreadLocal = 1,

    /// <summary>CU_STREAM_CAPTURE_MODE_RELAXED: nothing is forbidden.</summary>
    Relaxed = 2,
}

/// <summary>
/// A CUDA graph captured from a stream (<c>cuStreamBeginCapture_v2</c> …
/// <c>cuStreamEndCapture</c>). Instantiate it to launch it.
/// </summary>
/// <remarks>
/// Kernel launches, memsets and device-to-device copies are captured; nothing runs during the
/// capture. Allocation, synchronization and synchronous copies are not allowed on the capturing
/// thread (and, for blocking streams, the legacy default stream must not be used anywhere).
/// </remarks>
public sealed unsafe class CudaGraph : IDisposable
{
    private readonly CudaOwnedHandle _owned;

    private CudaGraph(CudaContext context, CudaOwnedHandle owned)
    {
        Context = context;
        _owned = owned;
    }

    /// <summary>The context.</summary>
    public CudaContext Context { get; }

    /// <summary>The <c>CUgraph</c> handle.</summary>
    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_owned.IsClosed, this);
            return _owned.Value;
        }
    }

    /// <summary>Captures the work <paramref name="body"/> enqueues on <paramref name="stream"/>.</summary>
    /// <param name="stream">The stream to capture (not the legacy default stream).</param>
    /// <param name="body">Enqueues the work.</param>
    /// <param name="mode">The capture mode.</param>
    /// <returns>The graph.</returns>
    /// <exception cref="CudaException">The capture failed or was invalidated.</exception>
    public static CudaGraph Capture(CudaStream stream, Action body, StreamCaptureMode mode = StreamCaptureMode.ThreadLocal)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(body);
        BeginCapture(stream, mode);
        try
        {
            body();
        }
        catch
        {
            // End the capture so the stream is usable again; drop whatever was captured.
            AbortCapture(stream);
            throw;
        }

        return EndCapture(stream);
    }

    /// <summary>Starts capturing <paramref name="stream"/>.</summary>
    /// <param name="stream">The stream.</param>
    /// <param name="mode">The capture mode.</param>
    public static void BeginCapture(CudaStream stream, StreamCaptureMode mode = StreamCaptureMode.ThreadLocal)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var s = stream.Handle;
        if (s == 0)
        {
            throw new ArgumentException("The legacy default stream cannot be captured; use a created stream.", nameof(stream));
        }

        stream.Context.Enter();
        stream.Context.Check(stream.Context.Api.cuStreamBeginCapture(s, (int)mode));
    }

    /// <summary>Ends the capture started on <paramref name="stream"/> and returns the graph.</summary>
    /// <param name="stream">The stream.</param>
    /// <returns>The graph.</returns>
    public static CudaGraph EndCapture(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var context = stream.Context;
        var owned = new CudaOwnedHandle(context, CudaHandleKind.Graph);
        try
        {
            var s = stream.Handle;
            context.Enter();
            nint graph = 0;
            var r = context.Api.cuStreamEndCapture(s, &graph);
            if (graph != 0)
            {
                owned.Set(graph);
            }

            context.Check(r, "cuStreamEndCapture");
            return new CudaGraph(context, owned);
        }
        catch
        {
            owned.Dispose();
            throw;
        }
    }

    /// <summary>Instantiates the graph (<c>cuGraphInstantiateWithFlags</c>, flags 0).</summary>
    /// <returns>The executable graph.</returns>
    public CudaGraphExec Instantiate()
    {
        var g = Handle;
        var owned = new CudaOwnedHandle(Context, CudaHandleKind.GraphExec);
        try
        {
            Context.Enter();
            nint exec;
            Context.Check(Context.Api.cuGraphInstantiateWithFlags(&exec, g, 0));
            owned.Set(exec);
            return new CudaGraphExec(Context, owned);
        }
        catch
        {
            owned.Dispose();
            throw;
        }
    }

    /// <summary>Destroys the graph (executable instances stay valid). Idempotent.</summary>
    public void Dispose() => _owned.Dispose();

    private static void AbortCapture(CudaStream stream)
    {
        try
        {
            using var discarded = EndCapture(stream);
        }
        catch (CudaException)
        {
            // The capture was invalidated by the failure; the stream is out of capture mode anyway.
        }
    }
}

/// <summary>An instantiated, launchable CUDA graph (<c>CUgraphExec</c>).</summary>
public sealed unsafe class CudaGraphExec : IDisposable
{
    private readonly CudaOwnedHandle _owned;

    internal CudaGraphExec(CudaContext context, CudaOwnedHandle owned)
    {
        Context = context;
        _owned = owned;
    }

    /// <summary>The context.</summary>
    public CudaContext Context { get; }

    /// <summary>The <c>CUgraphExec</c> handle.</summary>
    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_owned.IsClosed, this);
            return _owned.Value;
        }
    }

    /// <summary>Enqueues one run of the graph on <paramref name="stream"/> (<c>cuGraphLaunch</c>).</summary>
    /// <param name="stream">The stream.</param>
    public void Launch(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var e = Handle;
        var s = stream.Handle;
        Context.Enter();
        Context.Check(Context.Api.cuGraphLaunch(e, s));
    }

    /// <summary>Destroys the executable graph. Idempotent.</summary>
    public void Dispose() => _owned.Dispose();
}
