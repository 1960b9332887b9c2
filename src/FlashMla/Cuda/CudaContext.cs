using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FlashMla.Cuda;

/// <summary>
/// A device's primary context, retained for as long as this object or anything created from it
/// (buffers, streams, events, modules, graphs) is alive.
/// </summary>
/// <remarks>
/// <para>
/// <b>Threading.</b> Every public operation of this library that calls the driver first makes
/// the owning context current on the calling thread (<c>cuCtxSetCurrent</c>), so contexts,
/// buffers, streams and kernels can be used from any thread, including thread-pool and finalizer
/// threads; the calling thread's current context is left set to this one afterwards. The driver
/// API is thread-safe. Work is ordered only within a stream: when several threads enqueue to
/// one stream, their relative order is whatever order the calls happen in.
/// </para>
/// <para>
/// <b>Lifetime.</b> The primary context is retained with <c>cuDevicePrimaryCtxRetain</c> and
/// released with <c>cuDevicePrimaryCtxRelease_v2</c> once this object has been disposed and every
/// resource created from it has been released, so disposing in any order is safe and a resource
/// is never freed after its context is gone. Because it is the primary context, it is shared
/// with other libraries in the process that use the runtime API (PyTorch, ONNX Runtime) on the
/// same device, which makes device pointers from them usable here.
/// </para>
/// <para>
/// <b>Logging.</b> The <see cref="Logger"/> given at creation is the one of everything built on
/// the context: the kernel library (module loads and their JIT time, a PTX override) and the
/// CUDA decoder (the kernel path chosen per problem shape, rejected inputs). The default logs nothing.
/// </para>
/// </remarks>
public sealed unsafe class CudaContext : IDisposable
{
    private readonly Lock _attachmentsLock = new();
    private readonly List<IDisposable> _attachments = [];
    private int _references = 1;
    private int _disposed;

    /// <summary>Retains the primary context of <paramref name="device"/>.</summary>
    /// <param name="device">The device.</param>
    /// <param name="logger">The logger of the context and of what is built on it (<see cref="Logger"/>); null logs nothing.</param>
    /// <exception cref="ArgumentNullException"><paramref name="device"/> is null.</exception>
    /// <exception cref="CudaException">The driver could not retain the context.</exception>
    public CudaContext(CudaDevice device, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        Device = device;
        Driver = device.Driver;
        Logger = logger ?? NullLogger.Instance;
        nint handle;
        Driver.Check(Driver.Api.cuDevicePrimaryCtxRetain(&handle, device.Handle));
        Handle = handle;
        CudaLog.ContextRetained(Logger, device.ToString());
    }

    /// <summary>The device.</summary>
    public CudaDevice Device { get; }

    /// <summary>The driver.</summary>
    public CudaDriver Driver { get; }

    /// <summary>
    /// The logger given at creation (<see cref="NullLogger.Instance"/> when none was): the kernel
    /// library and the CUDA decoder of this context log to it.
    /// </summary>
    public ILogger Logger { get; }

    /// <summary>The <c>CUcontext</c> handle.</summary>
    public nint Handle { get; }

    /// <summary>Whether <see cref="Dispose"/> was called.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    internal Native.DriverApi Api => Driver.Api;

    /// <summary>Loads the driver and retains the primary context of device <paramref name="deviceOrdinal"/>.</summary>
    /// <param name="deviceOrdinal">The device index.</param>
    /// <param name="logger">Receives the driver load (when this call loads it) and becomes the context's <see cref="Logger"/>; null logs nothing.</param>
    /// <returns>The context.</returns>
    /// <exception cref="CudaLibraryLoadException">The driver library could not be loaded.</exception>
    /// <exception cref="CudaException">A driver call failed (no device, for example).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="deviceOrdinal"/> is negative or not below the device count.</exception>
    public static CudaContext Create(int deviceOrdinal = 0, ILogger? logger = null) => new(CudaDriver.Load(logger).GetDevice(deviceOrdinal), logger);

    /// <summary>
    /// Returns the object of type <typeparamref name="T"/> attached to this context, creating it
    /// with <paramref name="factory"/> on first use. Attachments are disposed, newest first, when
    /// the context is disposed, before the context is released: code built on the binding keeps
    /// per-context state here (loaded modules, say) without the binding knowing it.
    /// </summary>
    /// <typeparam name="T">The attachment's type; one attachment per type.</typeparam>
    /// <param name="factory">Creates the attachment; it runs at most once per context and must not dispose the context.</param>
    /// <returns>The attachment.</returns>
    /// <exception cref="ObjectDisposedException">The context was disposed.</exception>
    public T GetOrAttach<T>(Func<CudaContext, T> factory)
        where T : class, IDisposable
    {
        ArgumentNullException.ThrowIfNull(factory);
        lock (_attachmentsLock)
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            foreach (var attachment in _attachments)
            {
                if (attachment is T found && found.GetType() == typeof(T))
                {
                    return found;
                }
            }

            var created = factory(this) ?? throw new InvalidOperationException($"The factory of {typeof(T).Name} returned null.");
            _attachments.Add(created);
            return created;
        }
    }

    /// <summary>Makes this context current on the calling thread.</summary>
    /// <exception cref="ObjectDisposedException">The context was disposed.</exception>
    public void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        Enter();
    }

    /// <summary>Waits for all work in the context (<c>cuCtxSynchronize</c>).</summary>
    /// <exception cref="CudaException">A previous asynchronous operation failed.</exception>
    public void Synchronize()
    {
        MakeCurrent();
        Driver.Check(Api.cuCtxSynchronize());
    }

    /// <summary>Free and total device memory in bytes (<c>cuMemGetInfo_v2</c>).</summary>
    /// <returns>The free and total byte counts.</returns>
    public (long FreeBytes, long TotalBytes) GetMemoryInfo()
    {
        MakeCurrent();
        nuint free, total;
        Driver.Check(Api.cuMemGetInfo(&free, &total));
        return ((long)free, (long)total);
    }

    /// <summary>
    /// Releases this reference to the primary context. Resources created from the context keep it
    /// alive until they are released too. Idempotent.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        List<IDisposable> attachments;
        lock (_attachmentsLock)
        {
            attachments = [.. _attachments];
            _attachments.Clear();
        }

        for (var i = attachments.Count - 1; i >= 0; i--)
        {
            attachments[i].Dispose();
        }

        Release();
    }

    /// <summary>Formats as "primary context of #0 NVIDIA H200 (sm_90)".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => $"primary context of {Device}";

    /// <summary>Makes the context current for an operation on a resource that keeps it alive.</summary>
    internal void Enter() => Driver.Check(Api.cuCtxSetCurrent(Handle));

    /// <summary>Checks a driver result.</summary>
    internal void Check(CudaResult result, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(result))] string call = "") =>
        Driver.Check(result, call);

    /// <summary>Takes a reference for a new resource; throws when the context was disposed.</summary>
    internal void AddRef()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        while (true)
        {
            var current = Volatile.Read(ref _references);
            ObjectDisposedException.ThrowIf(current <= 0, this);
            if (Interlocked.CompareExchange(ref _references, current + 1, current) == current)
            {
                return;
            }
        }
    }

    /// <summary>Drops a reference; the last one releases the primary context. Never throws.</summary>
    internal void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            _ = Api.cuDevicePrimaryCtxRelease(Device.Handle);
        }
    }

    /// <summary>
    /// Frees a driver object owned by a resource of this context and drops the resource's
    /// reference. Never throws: errors (a sticky device error, a driver shutting down) are ignored.
    /// </summary>
    internal void ReleaseResource(CudaHandleKind kind, nint handle)
    {
        try
        {
            if (handle != 0 && Api.cuCtxSetCurrent(Handle) == CudaResult.Success)
            {
                _ = kind switch
                {
                    CudaHandleKind.DeviceMemory => Api.cuMemFree((ulong)handle),
                    CudaHandleKind.PinnedHostMemory => Api.cuMemFreeHost((void*)handle),
                    CudaHandleKind.Stream => Api.cuStreamDestroy(handle),
                    CudaHandleKind.Event => Api.cuEventDestroy(handle),
                    CudaHandleKind.Module => Api.cuModuleUnload(handle),
                    CudaHandleKind.Graph => Api.cuGraphDestroy(handle),
                    CudaHandleKind.GraphExec => Api.cuGraphExecDestroy(handle),
                    _ => CudaResult.Success,
                };
            }
        }
        finally
        {
            Release();
        }
    }
}
