using FlashMla.Cuda;

namespace FlashMla.Kernels;

/// <summary>
/// A kernel of the library with its <see cref="KernelDescriptor"/>: it is launched with the block
/// size and dynamic shared memory the kernel declares, with a parameter struct of the name and
/// size it declares, so neither is written on the host.
/// </summary>
public sealed class KernelEntry
{
    private readonly Lock _lock = new();
    private Type? _checkedParams;
    private int _sharedMemoryLimit;

    internal KernelEntry(CudaKernel kernel, KernelDescriptor descriptor)
    {
        Kernel = kernel;
        Descriptor = descriptor;
    }

    /// <summary>The kernel.</summary>
    public CudaKernel Kernel { get; }

    /// <summary>What the kernel says about itself.</summary>
    public KernelDescriptor Descriptor { get; }

    /// <summary>
    /// The most dynamic shared memory this kernel can get per CTA on its device: the opt-in
    /// limit minus its static shared memory.
    /// </summary>
    public int MaxDynamicSharedMemoryBytes =>
        Kernel.Module.Context.Device.MaxSharedMemoryPerBlockOptin - Kernel.StaticSharedSizeBytes;

    /// <summary>
    /// Launches the kernel on <paramref name="grid"/> with the descriptor's block size and the
    /// dynamic shared memory it declares for <paramref name="batch"/> requests, raising the
    /// kernel's shared-memory limit first when needed. Asynchronous; graph-capturable.
    /// </summary>
    /// <typeparam name="TParams">The C# mirror of the kernel's parameter struct (same name and size).</typeparam>
    /// <param name="grid">The grid.</param>
    /// <param name="parameters">The parameters.</param>
    /// <param name="stream">The stream.</param>
    /// <param name="batch">The batch size, for kernels whose shared memory grows per request.</param>
    /// <param name="dependentLaunch">Launch with programmatic stream serialization (PDL): the kernel may start before the previous one on the stream ends, and waits for it with <c>griddepcontrol.wait</c>.</param>
    /// <exception cref="InvalidOperationException"><typeparamref name="TParams"/> is not the struct the kernel declares, or the kernel needs more shared memory than the device has.</exception>
    public void Launch<TParams>(Dim3 grid, in TParams parameters, CudaStream stream, int batch = 0, bool dependentLaunch = false)
        where TParams : unmanaged
    {
        ArgumentNullException.ThrowIfNull(stream);
        CheckParams<TParams>();
        var bytes = Descriptor.SharedMemoryBytesFor(batch);
        EnsureSharedMemoryLimit(bytes);
        Kernel.Launch(new LaunchConfig(grid, new Dim3((uint)Descriptor.Threads), bytes, stream) { ProgrammaticStreamSerialization = dependentLaunch }, parameters);
    }

    /// <summary>Raises the kernel's dynamic shared-memory limit to at least <paramref name="bytes"/>.</summary>
    /// <param name="bytes">The bytes a launch will use.</param>
    /// <exception cref="InvalidOperationException">The device cannot give that much.</exception>
    public void EnsureSharedMemoryLimit(int bytes)
    {
        lock (_lock)
        {
            if (bytes <= Math.Max(_sharedMemoryLimit, DefaultDynamicSharedMemoryLimit))
            {
                return;
            }

            if (bytes > MaxDynamicSharedMemoryBytes)
            {
                throw new InvalidOperationException(
                    $"Kernel {Descriptor.Entry} needs {bytes} bytes of dynamic shared memory; {Kernel.Module.Context.Device} allows {MaxDynamicSharedMemoryBytes}.");
            }

            Kernel.SetMaxDynamicSharedMemory(bytes);
            _sharedMemoryLimit = bytes;
        }
    }

    /// <summary>Formats as the descriptor.</summary>
    /// <returns>The text.</returns>
    public override string ToString() => Descriptor.ToString();

    /// <summary>Dynamic shared memory a kernel may use without raising its limit.</summary>
    private const int DefaultDynamicSharedMemoryLimit = 48 * 1024;

    private unsafe void CheckParams<TParams>()
        where TParams : unmanaged
    {
        lock (_lock)
        {
            if (_checkedParams == typeof(TParams))
            {
                return;
            }

            if (typeof(TParams).Name != Descriptor.ParamStruct || sizeof(TParams) != Descriptor.ParamBytes)
            {
                throw new InvalidOperationException(
                    $"Kernel {Descriptor.Entry} takes {Descriptor.ParamStruct} ({Descriptor.ParamBytes} bytes); the host passed {typeof(TParams).Name} ({sizeof(TParams)} bytes).");
            }

            _checkedParams = typeof(TParams);
        }
    }
}
