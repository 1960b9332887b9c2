using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using FlashMla.Cuda;
using FlashMla.Mla.Cuda;
using FlashMla.Tensors;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using BFloat16 = FlashMla.Numerics.BFloat16;

/// <summary>
/// Decoding tensors that ONNX Runtime holds in CUDA memory (a session's inputs and outputs bound
/// with <c>OrtIoBinding</c>): their device pointers are wrapped as <see cref="DeviceTensor{T}"/>s.
/// </summary>
internal static class OnnxRuntimeInterop
{
    // <ort-value>
    /// <summary>A view of a CUDA OrtValue's memory (ONNX Runtime tensors are dense, row-major); nothing is copied.</summary>
    /// <remarks>
    /// ONNX Runtime hands out the address as a <see cref="Span{T}"/> over the tensor's bytes, which is
    /// never read on the host here; a span's int length limits this to tensors under 2 GiB. Give
    /// larger ones (a KV cache) to ONNX Runtime the other way, as in <see cref="AsOrtValue{T}"/>.
    /// </remarks>
    public static unsafe DeviceTensor<T> AsDeviceTensor<T>(OrtValue value)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(value);
        using (var memory = value.GetTensorMemoryInfo())
        {
            if (memory.GetDeviceType() != OrtMemoryInfoDeviceType.GPU)
            {
                throw new ArgumentException($"The OrtValue must be in CUDA memory; it is in {memory.Name} memory.", nameof(value));
            }
        }

        var info = value.GetTensorTypeAndShape();
        var elementType = info.ElementDataType switch
        {
            TensorElementType.BFloat16 => typeof(BFloat16),  // the same bits: see BFloat16Interop
            TensorElementType.Float16 => typeof(Half),
            TensorElementType.Int32 => typeof(int),
            TensorElementType.Float => typeof(float),
            _ => null,
        };
        if (elementType != typeof(T))
        {
            throw new ArgumentException($"An OrtValue of {info.ElementDataType} cannot be viewed as {typeof(T).Name}.", nameof(value));
        }

        var pointer = (ulong)Unsafe.AsPointer(ref MemoryMarshal.GetReference(value.GetTensorMutableRawData()));
        return new DeviceTensor<T>(pointer, TensorLayout.Contiguous(info.Shape));
    }
    // </ort-value>

    // <ort-wrap-buffer>
    /// <summary>The other way: device memory of this library seen by ONNX Runtime as a CUDA OrtValue (bind it as a session's input or output).</summary>
    public static OrtValue AsOrtValue<T>(DeviceBuffer<T> memory, TensorElementType elementType, params long[] shape)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(memory);
        using var cuda = new OrtMemoryInfo(OrtMemoryInfo.allocatorCUDA, OrtAllocatorType.DeviceAllocator, memory.Context.Device.Ordinal, OrtMemType.Default);
        return OrtValue.CreateTensorValueWithData(cuda, elementType, shape, (nint)memory.Pointer, memory.SizeInBytes);
    }
    // </ort-wrap-buffer>

    /// <summary>
    /// Decodes one layer whose queries and output are ONNX Runtime's OrtValues on CUDA, or says why
    /// it cannot run here.
    /// </summary>
    /// <returns>Whether it ran (or was skipped) without error.</returns>
    public static bool Run()
    {
        if (!CanRun(out var reason))
        {
            Console.WriteLine($"ort: skipped: {reason}");
            return true;
        }

        const int batch = 2, queryLength = 1, queryHeads = 16, kvHeads = 1;
        const int headDim = 576, headDimV = 512, pageBlockSize = 64;
        int[] lengths = [300, 1000];
        var maxBlocksPerSequence = (lengths.Max() + pageBlockSize - 1) / pageBlockSize;
        var numBlocks = batch * maxBlocksPerSequence;
        var random = new Random(2024);

        using var context = CudaContext.Create();
        using var stream = CudaStream.Create(context);
        using var decoder = new CudaMlaDecoder(context);

        // The engine's own memory: the cache, the block table, the lengths and the LSE.
        using var kCacheMemory = DeviceBuffer<BFloat16>.FromHost(context, RandomValues(random, numBlocks * pageBlockSize * kvHeads * headDim));
        var pages = Enumerable.Range(0, numBlocks).ToArray();
        random.Shuffle(pages);
        using var blockTableMemory = DeviceBuffer<int>.FromHost(context, pages);
        using var seqlensMemory = DeviceBuffer<int>.FromHost(context, lengths);
        using var lseMemory = DeviceBuffer<float>.Allocate(context, batch * queryHeads * queryLength);

        // Stand-ins for the OrtValues a session would produce and consume on CUDA: the queries from
        // the layer's projections, the attention output for the next ones.
        using var qMemory = DeviceBuffer<BFloat16>.FromHost(context, RandomValues(random, batch * queryLength * queryHeads * headDim));
        using var outputMemory = DeviceBuffer<BFloat16>.Allocate(context, batch * queryLength * queryHeads * headDimV);
        using var qValue = AsOrtValue(qMemory, TensorElementType.BFloat16, batch, queryLength, queryHeads, headDim);
        using var outputValue = AsOrtValue(outputMemory, TensorElementType.BFloat16, batch, queryLength, queryHeads, headDimV);

        // <ort-decode>
        // A session's Run has finished its CUDA work when it returns, so the decode may read q on any
        // stream; synchronize before the next Run reads the output. (The CUDA execution provider's
        // "user_compute_stream" option puts the session on this stream instead.)
        var cacheSeqlens = seqlensMemory.AsTensor(batch);
        using var plan = decoder.CreatePlan(batch, queryLength, queryHeads, kvHeads);
        decoder.UpdatePlan(plan, cacheSeqlens, maxBlocksPerSequence, pageBlockSize, stream);
        decoder.Decode(
            AsDeviceTensor<BFloat16>(qValue),
            kCacheMemory.AsTensor(numBlocks, pageBlockSize, kvHeads, headDim),
            blockTableMemory.AsTensor(batch, maxBlocksPerSequence),
            cacheSeqlens,
            plan,
            AsDeviceTensor<BFloat16>(outputValue),
            lseMemory.AsTensor(batch, queryHeads, queryLength),
            stream);
        decoder.Synchronize(stream, plan);
        // </ort-decode>

        var sumAbs = outputMemory.ToArray().Sum(x => Math.Abs((double)x));
        Console.WriteLine($"ort: decoded on {context.Device} into an OrtValue: sum |out| = {sumAbs:F6}");
        return true;
    }

    private static bool CanRun(out string reason)
    {
        if (!CudaDriver.TryLoad(out var driver, out reason) || driver.DeviceCount == 0)
        {
            reason = $"no CUDA device is usable ({(driver is null ? reason : "the driver reports none")})";
            return false;
        }

        try
        {
            using var probe = new OrtMemoryInfo(OrtMemoryInfo.allocatorCUDA, OrtAllocatorType.DeviceAllocator, 0, OrtMemType.Default);
        }
        catch (TypeInitializationException ex) when (ex.InnerException is DllNotFoundException)
        {
            reason = "ONNX Runtime's native library is not installed; reference Microsoft.ML.OnnxRuntime.Gpu (or Microsoft.ML.OnnxRuntime) to run this recipe";
            return false;
        }

        reason = string.Empty;
        return true;
    }

    private static BFloat16[] RandomValues(Random random, int count)
    {
        var values = new BFloat16[count];
        foreach (ref var x in values.AsSpan())
        {
            x = (BFloat16)((random.NextSingle() - 0.5f) / 5);
        }

        return values;
    }
}
