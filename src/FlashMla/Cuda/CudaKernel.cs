using FlashMla.Cuda.Native;

namespace FlashMla.Cuda;

/// <summary>Function attributes (<c>CUfunction_attribute</c>, cuda.h).</summary>
public enum CudaFunctionAttribute
{
    /// <summary>CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK.</summary>
    MaxThreadsPerBlock = 0,

    /// <summary>CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES (static shared memory).</summary>
    SharedSizeBytes = 1,

    /// <summary>CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES.</summary>
    ConstSizeBytes = 2,

    /// <summary>CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES (local memory per thread: spills and stack).</summary>
    LocalSizeBytes = 3,

    /// <summary>CU_FUNC_ATTRIBUTE_NUM_REGS.</summary>
    NumRegisters = 4,

    /// <summary>CU_FUNC_ATTRIBUTE_PTX_VERSION.</summary>
    PtxVersion = 5,

    /// <summary>CU_FUNC_ATTRIBUTE_BINARY_VERSION.</summary>
    BinaryVersion = 6,

    /// <summary>CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.</summary>
    MaxDynamicSharedSizeBytes = 8,
}

/// <summary>
/// A kernel of a <see cref="CudaModule"/> (<c>CUfunction</c>). It is valid while its module is
/// loaded. Every kernel of this library takes exactly one by-value parameter struct
/// (docs/architecture.md, "Kernel ABI"), which <see cref="Launch{TParams}"/> passes.
/// </summary>
public sealed unsafe class CudaKernel
{
    private readonly Lock _checkLock = new();
    private Type? _checkedParamsType;
    private long? _paramSize;
    private bool _paramSizeQueried;

    internal CudaKernel(CudaModule module, string name, nint handle)
    {
        Module = module;
        Name = name;
        RawHandle = handle;
    }

    /// <summary>The module.</summary>
    public CudaModule Module { get; }

    /// <summary>The entry name.</summary>
    public string Name { get; }

    /// <summary>The <c>CUfunction</c> handle.</summary>
    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(Module.IsDisposed, Module);
            return RawHandle;
        }
    }

    /// <summary>Registers per thread.</summary>
    public int NumRegisters => GetAttribute(CudaFunctionAttribute.NumRegisters);

    /// <summary>Local memory per thread in bytes (non-zero means spills or a stack frame).</summary>
    public int LocalSizeBytes => GetAttribute(CudaFunctionAttribute.LocalSizeBytes);

    /// <summary>The largest block this kernel can be launched with.</summary>
    public int MaxThreadsPerBlock => GetAttribute(CudaFunctionAttribute.MaxThreadsPerBlock);

    /// <summary>Static shared memory per block in bytes.</summary>
    public int StaticSharedSizeBytes => GetAttribute(CudaFunctionAttribute.SharedSizeBytes);

    /// <summary>The dynamic shared memory limit per block currently set, in bytes (48 KiB unless raised).</summary>
    public int MaxDynamicSharedSizeBytes => GetAttribute(CudaFunctionAttribute.MaxDynamicSharedSizeBytes);

    /// <summary>
    /// The size in bytes of the kernel's first parameter as the driver lays it out
    /// (<c>cuFuncGetParamInfo</c>, CUDA ≥ 12.4), or null when the driver cannot tell.
    /// </summary>
    public long? ParameterSizeBytes
    {
        get
        {
            lock (_checkLock)
            {
                if (!_paramSizeQueried)
                {
                    _paramSize = QueryParamSize(0);
                    _paramSizeQueried = true;
                }

                return _paramSize;
            }
        }
    }

    internal nint RawHandle { get; }

    private CudaContext Context => Module.Context;

    /// <summary>Reads a function attribute (<c>cuFuncGetAttribute</c>).</summary>
    /// <param name="attribute">The attribute.</param>
    /// <returns>The value.</returns>
    public int GetAttribute(CudaFunctionAttribute attribute)
    {
        var f = Handle;
        Context.Enter();
        int value;
        Context.Check(Context.Api.cuFuncGetAttribute(&value, (int)attribute, f));
        return value;
    }

    /// <summary>
    /// Allows launches with up to <paramref name="bytes"/> of dynamic shared memory
    /// (<c>cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)</c>); needed above 48 KiB.
    /// </summary>
    /// <param name="bytes">The limit, at most the device's opt-in maximum minus the kernel's static shared memory.</param>
    /// <exception cref="ArgumentOutOfRangeException">More than the device allows.</exception>
    public void SetMaxDynamicSharedMemory(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        var limit = Context.Device.MaxSharedMemoryPerBlockOptin - StaticSharedSizeBytes;
        if (bytes > limit)
        {
            throw new ArgumentOutOfRangeException(
                nameof(bytes),
                bytes,
                $"Kernel {Name} can use at most {limit} bytes of dynamic shared memory on {Context.Device} (opt-in maximum {Context.Device.MaxSharedMemoryPerBlockOptin} minus {StaticSharedSizeBytes} static).");
        }

        var f = Handle;
        Context.Enter();
        Context.Check(Context.Api.cuFuncSetAttribute(f, (int)CudaFunctionAttribute.MaxDynamicSharedSizeBytes, bytes));
    }

    /// <summary>
    /// Launches the kernel with <c>cuLaunchKernelEx</c>, passing <paramref name="parameters"/> by
    /// value as the kernel's single parameter (kernelParams = one pointer to a copy of it).
    /// Asynchronous; graph-capturable.
    /// </summary>
    /// <typeparam name="TParams">A blittable struct laid out exactly like the kernel's C parameter struct.</typeparam>
    /// <param name="config">Grid, block, dynamic shared memory, stream, attributes.</param>
    /// <param name="parameters">The parameter struct.</param>
    /// <exception cref="ArgumentException">The struct's size differs from the kernel's parameter (checked once per type when the driver reports parameter sizes), or a dimension is 0.</exception>
    /// <exception cref="CudaException">The launch failed; the message names the kernel and configuration.</exception>
    public void Launch<TParams>(in LaunchConfig config, in TParams parameters)
        where TParams : unmanaged
    {
        if (config.Grid.Volume == 0 || config.Block.Volume == 0)
        {
            throw new ArgumentException($"Kernel {Name}: grid and block sizes must be at least 1 in every dimension; got {config}.", nameof(config));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(config.DynamicSharedMemoryBytes, nameof(config));
        CheckParams<TParams>();

        var f = Handle;
        var stream = config.Stream?.Handle ?? 0;
        if (config.Stream is { } s && s.Context != Context && s.Context.Handle != Context.Handle)
        {
            throw new ArgumentException($"Kernel {Name}: the stream belongs to another context.", nameof(config));
        }

        var attrs = stackalloc CuLaunchAttribute[2];
        uint count = 0;
        if (config.ClusterDim is { } cluster)
        {
            attrs[count] = default;
            attrs[count].Id = CuLaunchAttribute.ClusterDimension;
            attrs[count].Value0 = cluster.X;
            attrs[count].Value1 = cluster.Y;
            attrs[count].Value2 = cluster.Z;
            count++;
        }

        if (config.ProgrammaticStreamSerialization)
        {
            attrs[count] = default;
            attrs[count].Id = CuLaunchAttribute.ProgrammaticStreamSerialization;
            attrs[count].Value0 = 1;
            count++;
        }

        var native = new CuLaunchConfig
        {
            GridDimX = config.Grid.X,
            GridDimY = config.Grid.Y,
            GridDimZ = config.Grid.Z,
            BlockDimX = config.Block.X,
            BlockDimY = config.Block.Y,
            BlockDimZ = config.Block.Z,
            SharedMemBytes = (uint)config.DynamicSharedMemoryBytes,
            Stream = stream,
            Attrs = count == 0 ? null : attrs,
            NumAttrs = count,
        };

        var copy = parameters;
        var args = stackalloc void*[1];
        args[0] = &copy;
        Context.Enter();
        var r = Context.Api.cuLaunchKernelEx(&native, f, args, null);
        if (r != CudaResult.Success)
        {
            throw Context.Driver.Error(r, $"cuLaunchKernelEx({Name})", $"kernel {Name} ({Module.Name}): {config}, parameter struct {typeof(TParams).Name} ({sizeof(TParams)} bytes)");
        }
    }

    /// <summary>Formats as "name (module)".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => $"{Name} ({Module.Name})";

    private void CheckParams<TParams>()
        where TParams : unmanaged
    {
        lock (_checkLock)
        {
            if (_checkedParamsType == typeof(TParams))
            {
                return;
            }
        }

        var expected = ParameterSizeBytes;
        if (expected is { } size)
        {
            if (size != sizeof(TParams))
            {
                throw new ArgumentException(
                    $"Kernel {Name} takes a {size}-byte parameter, but {typeof(TParams).Name} is {sizeof(TParams)} bytes: the C# struct does not match the kernel's C struct.",
                    nameof(TParams));
            }
        }

        lock (_checkLock)
        {
            _checkedParamsType = typeof(TParams);
        }
    }

    private long? QueryParamSize(int index)
    {
        if (Context.Api.cuFuncGetParamInfo == null)
        {
            return null;
        }

        var f = Handle;
        Context.Enter();
        nuint offset, size;
        return Context.Api.cuFuncGetParamInfo(f, (nuint)index, &offset, &size) == CudaResult.Success ? (long)size : null;
    }
}
