using System.Runtime.InteropServices;
using FlashMla.Cuda;
using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Kernels;

/// <summary>
/// Fills device memory with a 32-bit pattern using the PTX kernel <c>flashmla_fill_u32</c>
/// (module <c>fill</c>), e.g. to poison outputs with NaN before a run. It doubles as the proof
/// that the PTX → JIT → launch path works. Fills are asynchronous and graph-capturable.
/// </summary>
public static class DeviceFill
{
    /// <summary>The module (kernels/fill.cu).</summary>
    public const string ModuleName = "fill";

    /// <summary>The kernel's entry name: the module's one entry, as its PTX declares it.</summary>
    public static string KernelName { get; } =
        KernelLibrary.EntryNames(KernelLibrary.ReadPtx(KernelLibrary.TargetsOf(ModuleName)[0], ModuleName)!).Single();

    /// <summary>The largest grid launched; the kernel's grid-stride loop covers the rest.</summary>
    public const int MaxGridSize = 65535;

    /// <summary>A quiet-NaN pattern filling 32 bits with NaNs of <typeparamref name="T"/>.</summary>
    /// <typeparam name="T"><see cref="float"/>, <see cref="Half"/>, <see cref="BFloat16"/> (or <see cref="double"/>, whose NaN 0x7FF8000000000000 has a zero low word, so it is not expressible; throws).</typeparam>
    /// <returns>0x7FC00000 for float, 0x7E007E00 for Half, 0x7FC07FC0 for BFloat16.</returns>
    /// <exception cref="NotSupportedException">Another type.</exception>
    public static uint NaNPattern<T>()
        where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            return 0x7FC0_0000u;
        }

        if (typeof(T) == typeof(Half))
        {
            return 0x7E00_7E00u;
        }

        if (typeof(T) == typeof(BFloat16))
        {
            return 0x7FC0_7FC0u;
        }

        throw new NotSupportedException($"No 32-bit NaN pattern for {typeof(T).Name}; expected float, Half or BFloat16.");
    }

    /// <summary>
    /// Sets <paramref name="wordCount"/> 32-bit words at <paramref name="pointer"/> to
    /// <paramref name="value"/>.
    /// </summary>
    /// <param name="context">The context.</param>
    /// <param name="pointer">A 4-byte aligned device address.</param>
    /// <param name="wordCount">The number of 32-bit words.</param>
    /// <param name="value">The pattern.</param>
    /// <param name="stream">The stream.</param>
    /// <param name="useMemset">True to use <c>cuMemsetD32Async</c> instead of the kernel.</param>
    public static unsafe void FillU32(CudaContext context, ulong pointer, long wordCount, uint value, CudaStream stream, bool useMemset = false)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfNegative(wordCount);
        if (pointer % 4 != 0)
        {
            throw new ArgumentException($"The address 0x{pointer:x} is not 4-byte aligned.", nameof(pointer));
        }

        if (wordCount == 0)
        {
            return;
        }

        if (useMemset)
        {
            var s = stream.Handle;
            context.Enter();
            context.Check(context.Api.cuMemsetD32Async(pointer, value, (nuint)wordCount, s));
            return;
        }

        var kernel = KernelLibrary.For(context).GetEntry(ModuleName, KernelName);
        var threads = kernel.Descriptor.Threads;
        var grid = (uint)Math.Min((wordCount + threads - 1) / threads, MaxGridSize);
        var parameters = new FillParams { Dst = pointer, Count = (ulong)wordCount, Value = value };
        kernel.Launch(new Dim3(grid), parameters, stream);
    }

    /// <summary>
    /// Fills the bytes of <paramref name="buffer"/> with <paramref name="pattern"/> repeated. For
    /// 2-byte element types the two halves of the pattern should be equal (an odd element at the
    /// end gets the low half).
    /// </summary>
    /// <typeparam name="T">The element type (size a multiple of 2 bytes).</typeparam>
    /// <param name="buffer">The buffer.</param>
    /// <param name="pattern">The 32-bit pattern.</param>
    /// <param name="stream">The stream.</param>
    /// <param name="useMemset">True to use <c>cuMemsetD32Async</c> instead of the kernel.</param>
    public static void Fill<T>(DeviceBuffer<T> buffer, uint pattern, CudaStream stream, bool useMemset = false)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(buffer);
        FillBytes(buffer.Context, buffer.Pointer, buffer.SizeInBytes, pattern, stream, useMemset);
    }

    /// <summary>
    /// Fills every byte a tensor's layout spans (<see cref="DeviceTensor{T}.SpanBytes"/>, gaps
    /// between strided rows included) with <paramref name="pattern"/> repeated.
    /// </summary>
    /// <typeparam name="T">The element type (size a multiple of 2 bytes).</typeparam>
    /// <param name="context">The context the memory belongs to.</param>
    /// <param name="tensor">The tensor (2-byte aligned).</param>
    /// <param name="pattern">The 32-bit pattern.</param>
    /// <param name="stream">The stream.</param>
    /// <param name="useMemset">True to use <c>cuMemsetD32Async</c> instead of the kernel.</param>
    public static void Fill<T>(CudaContext context, DeviceTensor<T> tensor, uint pattern, CudaStream stream, bool useMemset = false)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        FillBytes(context, tensor.Pointer, tensor.SpanBytes, pattern, stream, useMemset);
    }

    /// <summary>Fills a buffer with NaN (<see cref="NaNPattern{T}"/>).</summary>
    /// <typeparam name="T">float, Half or BFloat16.</typeparam>
    /// <param name="buffer">The buffer.</param>
    /// <param name="stream">The stream.</param>
    public static void PoisonWithNaN<T>(DeviceBuffer<T> buffer, CudaStream stream)
        where T : unmanaged => Fill(buffer, NaNPattern<T>(), stream);

    /// <summary>Fills the memory a tensor spans with NaN (<see cref="NaNPattern{T}"/>).</summary>
    /// <typeparam name="T">float, Half or BFloat16.</typeparam>
    /// <param name="context">The context.</param>
    /// <param name="tensor">The tensor.</param>
    /// <param name="stream">The stream.</param>
    public static void PoisonWithNaN<T>(CudaContext context, DeviceTensor<T> tensor, CudaStream stream)
        where T : unmanaged => Fill(context, tensor, NaNPattern<T>(), stream);

    private static unsafe void FillBytes(CudaContext context, ulong pointer, long bytes, uint pattern, CudaStream stream, bool useMemset)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(stream);
        if (bytes == 0)
        {
            return;
        }

        if (pointer % 2 != 0 || bytes % 2 != 0)
        {
            throw new ArgumentException($"Fills need 2-byte granularity; got address 0x{pointer:x}, {bytes} bytes.", nameof(pointer));
        }

        var start = pointer;
        var end = pointer + (ulong)bytes;
        var half = (ushort)(pattern & 0xFFFF);
        if (start % 4 != 0)
        {
            Memset16(context, start, half, 1, stream);
            start += 2;
        }

        var words = (long)((end - start) / 4);
        FillU32(context, start, words, pattern, stream, useMemset);
        var tail = start + ((ulong)words * 4);
        if (tail < end)
        {
            Memset16(context, tail, half, 1, stream);
        }
    }

    private static unsafe void Memset16(CudaContext context, ulong pointer, ushort value, long count, CudaStream stream)
    {
        var s = stream.Handle;
        context.Enter();
        context.Check(context.Api.cuMemsetD16Async(pointer, value, (nuint)count, s));
    }
}

/// <summary>The C struct <c>FillParams</c> of kernels/include/decode_abi.cuh (24 bytes): dst[i] = value for i &lt; count.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct FillParams
{
    public ulong Dst;
    public ulong Count;
    public uint Value;
    public uint Pad;
}
