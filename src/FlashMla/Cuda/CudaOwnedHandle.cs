using System.Runtime.InteropServices;

namespace FlashMla.Cuda;

/// <summary>The kind of driver object a <see cref="CudaOwnedHandle"/> owns.</summary>
internal enum CudaHandleKind
{
    DeviceMemory,
    PinnedHostMemory,
    Stream,
    Event,
    Module,
    Graph,
    GraphExec,
}

/// <summary>
/// Owns one driver object and one reference to its context. Released exactly once, by
/// <see cref="SafeHandle.Dispose()"/> or by the critical finalizer; release never throws.
/// </summary>
internal sealed class CudaOwnedHandle : SafeHandle
{
    private readonly CudaContext? _context;
    private readonly CudaHandleKind _kind;

    /// <summary>Takes a context reference (throws when the context was disposed).</summary>
    public CudaOwnedHandle(CudaContext context, CudaHandleKind kind)
        : base(0, ownsHandle: true)
    {
        // If AddRef throws, the half-built handle is still finalized: _context stays null and
        // IsInvalid makes the finalizer skip ReleaseHandle.
        context.AddRef();
        _context = context;
        _kind = kind;
    }

    /// <summary>
    /// False once the context reference is held, so that release runs exactly once, even for an
    /// empty (0) handle, and returns the reference.
    /// </summary>
    public override bool IsInvalid => _context is null;

    /// <summary>The raw handle value.</summary>
    public nint Value => handle;

    /// <summary>Stores the driver handle once it was created.</summary>
    public void Set(nint value) => SetHandle(value);

    protected override bool ReleaseHandle()
    {
        _context?.ReleaseResource(_kind, handle);
        return true;
    }
}
