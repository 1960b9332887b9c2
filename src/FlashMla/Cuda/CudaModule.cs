using System.Runtime.InteropServices;
using System.Text;
using FlashMla.Cuda.Native;

namespace FlashMla.Cuda;

/// <summary>
/// A loaded module (<c>cuModuleLoadDataEx</c>): PTX JIT-compiled by the driver for the context's
/// device, or a cubin/fatbin. Unloaded on dispose; its kernels are unusable afterwards.
/// </summary>
/// <remarks>
/// PTX is loaded with the JIT options <c>CU_JIT_INFO_LOG_BUFFER</c>,
/// <c>CU_JIT_ERROR_LOG_BUFFER</c> (with their sizes) and <c>CU_JIT_LOG_VERBOSE = 1</c>: the
/// compiler's report (registers, spills, shared memory per kernel) is <see cref="JitInfoLog"/>,
/// and on failure the error log is in the <see cref="CudaException"/>. The driver caches JIT
/// output on disk (<c>CUDA_CACHE_PATH</c>); when it reuses a cached compilation, the info log
/// may be empty.
/// </remarks>
public sealed unsafe class CudaModule : IDisposable
{
    private const int LogBufferBytes = 64 * 1024;

    private readonly CudaOwnedHandle _owned;
    private readonly Dictionary<string, CudaKernel> _kernels = new(StringComparer.Ordinal);
    private readonly Lock _kernelsLock = new();

    private CudaModule(CudaContext context, CudaOwnedHandle owned, string name, string jitInfoLog)
    {
        Context = context;
        _owned = owned;
        Name = name;
        JitInfoLog = jitInfoLog;
    }

    /// <summary>The context the module is loaded in.</summary>
    public CudaContext Context { get; }

    /// <summary>A name for messages (the PTX resource name, say).</summary>
    public string Name { get; }

    /// <summary>The JIT compiler's info log (verbose): per-kernel registers, spills, shared memory. May be empty when the driver used its JIT cache.</summary>
    public string JitInfoLog { get; }

    /// <summary>Whether the module was unloaded.</summary>
    public bool IsDisposed => _owned.IsClosed;

    /// <summary>The <c>CUmodule</c> handle.</summary>
    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_owned.IsClosed, this);
            return _owned.Value;
        }
    }

    /// <summary>JIT-compiles and loads PTX text.</summary>
    /// <param name="context">The context.</param>
    /// <param name="ptx">The PTX source.</param>
    /// <param name="name">A name for messages.</param>
    /// <returns>The module.</returns>
    /// <exception cref="CudaException">Loading failed; the message holds the JIT error log.</exception>
    public static CudaModule LoadPtx(CudaContext context, string ptx, string name = "ptx")
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(ptx);
        var bytes = new byte[Encoding.UTF8.GetByteCount(ptx) + 1];
        Encoding.UTF8.GetBytes(ptx, bytes);
        return LoadImage(context, bytes, name);
    }

    /// <summary>
    /// Loads a module image: NUL-terminated PTX, a cubin or a fatbin, as
    /// <c>cuModuleLoadDataEx</c> accepts.
    /// </summary>
    /// <param name="context">The context.</param>
    /// <param name="image">The image bytes (PTX must end with a NUL byte).</param>
    /// <param name="name">A name for messages.</param>
    /// <returns>The module.</returns>
    /// <exception cref="CudaException">Loading failed; the message holds the JIT error log.</exception>
    public static CudaModule LoadImage(CudaContext context, ReadOnlySpan<byte> image, string name = "image")
    {
        ArgumentNullException.ThrowIfNull(context);
        if (image.IsEmpty)
        {
            throw new ArgumentException("The module image is empty.", nameof(image));
        }

        var owned = new CudaOwnedHandle(context, CudaHandleKind.Module);
        var infoLog = (byte*)NativeMemory.AllocZeroed(LogBufferBytes);
        var errorLog = (byte*)NativeMemory.AllocZeroed(LogBufferBytes);
        try
        {
            const int OptionCount = 5;
            var options = stackalloc int[OptionCount];
            var values = stackalloc void*[OptionCount];
            options[0] = CuConstants.JitInfoLogBuffer;
            values[0] = infoLog;
            options[1] = CuConstants.JitInfoLogBufferSizeBytes;
            values[1] = (void*)(nuint)LogBufferBytes;
            options[2] = CuConstants.JitErrorLogBuffer;
            values[2] = errorLog;
            options[3] = CuConstants.JitErrorLogBufferSizeBytes;
            values[3] = (void*)(nuint)LogBufferBytes;
            options[4] = CuConstants.JitLogVerbose;
            values[4] = (void*)(nuint)1;

            context.Enter();
            nint module;
            CudaResult r;
            fixed (byte* data = image)
            {
                r = context.Api.cuModuleLoadDataEx(&module, data, OptionCount, options, values);
            }

            var info = ReadLog(infoLog);
            if (r != CudaResult.Success)
            {
                var error = ReadLog(errorLog);
                var detail = new StringBuilder().Append("module ").Append(name).Append(": JIT error log:");
                detail.AppendLine().Append(error.Length == 0 ? "(empty)" : error);
                if (info.Length > 0)
                {
                    detail.AppendLine().Append("JIT info log:").AppendLine().Append(info);
                }

                throw context.Driver.Error(r, $"cuModuleLoadDataEx({name})", detail.ToString());
            }

            owned.Set(module);
            return new CudaModule(context, owned, name, info);
        }
        catch
        {
            owned.Dispose();
            throw;
        }
        finally
        {
            NativeMemory.Free(infoLog);
            NativeMemory.Free(errorLog);
        }
    }

    /// <summary>Gets a kernel by its (unmangled, <c>extern "C"</c>) name; cached.</summary>
    /// <param name="name">The entry name.</param>
    /// <returns>The kernel.</returns>
    /// <exception cref="CudaException">No such kernel (<c>CUDA_ERROR_NOT_FOUND</c>).</exception>
    public CudaKernel GetKernel(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_kernelsLock)
        {
            if (_kernels.TryGetValue(name, out var cached))
            {
                return cached;
            }

            var module = Handle;
            Context.Enter();
            var bytes = Encoding.UTF8.GetBytes(name + "\0");
            nint function;
            fixed (byte* s = bytes)
            {
                var r = Context.Api.cuModuleGetFunction(&function, module, s);
                if (r != CudaResult.Success)
                {
                    throw Context.Driver.Error(r, $"cuModuleGetFunction({Name}, {name})");
                }
            }

            var kernel = new CudaKernel(this, name, function);
            _kernels.Add(name, kernel);
            return kernel;
        }
    }

    /// <summary>The address and size of a <c>__device__</c> or <c>__constant__</c> variable (<c>cuModuleGetGlobal_v2</c>).</summary>
    /// <param name="name">The variable's name.</param>
    /// <returns>The device pointer and its size in bytes.</returns>
    public (ulong Pointer, long SizeInBytes) GetGlobal(string name)
    {
        var r = QueryGlobal(name, out var pointer, out var size);
        return r == CudaResult.Success ? (pointer, size) : throw Context.Driver.Error(r, $"cuModuleGetGlobal({Name}, {name})");
    }

    /// <summary>
    /// Reads the bytes of a <c>__device__</c> or <c>__constant__</c> variable
    /// (<c>cuModuleGetGlobal_v2</c>, then <c>cuMemcpyDtoH_v2</c>), or returns null when the
    /// module has no variable of that name.
    /// </summary>
    /// <param name="name">The variable's (unmangled, <c>extern "C"</c>) name.</param>
    /// <returns>Its bytes, or null.</returns>
    /// <exception cref="CudaException">A driver call failed for another reason.</exception>
    public byte[]? TryReadGlobal(string name)
    {
        var r = QueryGlobal(name, out var pointer, out var size);
        if (r == CudaResult.NotFound)
        {
            return null;
        }

        if (r != CudaResult.Success)
        {
            throw Context.Driver.Error(r, $"cuModuleGetGlobal({Name}, {name})");
        }

        var data = new byte[size];
        fixed (byte* d = data)
        {
            Context.Check(Context.Api.cuMemcpyDtoH(d, pointer, (nuint)size), $"cuMemcpyDtoH_v2({Name}, {name}, {size} bytes)");
        }

        return data;
    }

    private CudaResult QueryGlobal(string name, out ulong pointer, out long sizeInBytes)
    {
        ArgumentNullException.ThrowIfNull(name);
        var module = Handle;
        Context.Enter();
        var bytes = Encoding.UTF8.GetBytes(name + "\0");
        ulong ptr;
        nuint size;
        CudaResult r;
        fixed (byte* s = bytes)
        {
            r = Context.Api.cuModuleGetGlobal(&ptr, &size, module, s);
        }

        pointer = r == CudaResult.Success ? ptr : 0;
        sizeInBytes = r == CudaResult.Success ? (long)size : 0;
        return r;
    }

    /// <summary>Unloads the module. Idempotent.</summary>
    public void Dispose() => _owned.Dispose();

    private static string ReadLog(byte* buffer)
    {
        var n = 0;
        while (n < LogBufferBytes && buffer[n] != 0)
        {
            n++;
        }

        return Encoding.UTF8.GetString(buffer, n).TrimEnd();
    }
}
