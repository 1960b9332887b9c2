using System.Runtime.InteropServices;
using FlashMla.Cuda;
using FlashMla.Mla.Cuda;
using FlashMla.Tensors;
using TorchSharp;
using BFloat16 = FlashMla.Numerics.BFloat16;

/// <summary>
/// Decoding tensors that TorchSharp owns: their device pointers and strides are wrapped as
/// <see cref="DeviceTensor{T}"/>s, and the decode runs on the stream TorchSharp queues its work on.
/// </summary>
internal static partial class TorchSharpInterop
{
    // <torchsharp-tensor>
    /// <summary>A view of a CUDA tensor's memory, shape and strides (in elements); nothing is copied.</summary>
    /// <remarks>TorchSharp does not expose <c>data_ptr()</c>; its native library exports it as <c>THSTensor_data</c>.</remarks>
    public static DeviceTensor<T> AsDeviceTensor<T>(torch.Tensor tensor)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensor.is_cuda)
        {
            throw new ArgumentException($"The tensor must be on a CUDA device; it is on {tensor.device}.", nameof(tensor));
        }

        var elementType = tensor.dtype switch
        {
            torch.ScalarType.BFloat16 => typeof(BFloat16),  // the same bits: see BFloat16Interop
            torch.ScalarType.Float16 => typeof(Half),
            torch.ScalarType.Int32 => typeof(int),
            torch.ScalarType.Float32 => typeof(float),
            _ => null,
        };
        if (elementType != typeof(T))
        {
            throw new ArgumentException($"A tensor of {tensor.dtype} cannot be viewed as {typeof(T).Name}.", nameof(tensor));
        }

        var pointer = (ulong)TensorDataPointer(tensor.Handle);
        return new DeviceTensor<T>(pointer, new TensorLayout(tensor.shape, tensor.stride()));
    }

    [LibraryImport("LibTorchSharp", EntryPoint = "THSTensor_data")]
    private static partial nint TensorDataPointer(nint tensor);
    // </torchsharp-tensor>

    /// <summary>Decodes one layer held in TorchSharp tensors, or says why it cannot run here.</summary>
    /// <returns>Whether it ran (or was skipped) without error.</returns>
    public static bool Run()
    {
        if (!CanRun(out var reason))
        {
            Console.WriteLine($"torch: skipped: {reason}");
            return true;
        }

        const int batch = 2, queryLength = 1, queryHeads = 16, kvHeads = 1;
        const int headDim = 576, headDimV = 512, pageBlockSize = 64;
        int[] lengths = [300, 1000];
        var maxBlocksPerSequence = (lengths.Max() + pageBlockSize - 1) / pageBlockSize;
        var numBlocks = batch * maxBlocksPerSequence;

        using var scope = torch.NewDisposeScope();
        var cuda = torch.CUDA;
        var q = (torch.randn(batch, queryLength, queryHeads, headDim, device: cuda) / 10).to(torch.bfloat16);
        var kCache = (torch.randn(numBlocks, pageBlockSize, kvHeads, headDim, device: cuda) / 10).to(torch.bfloat16);
        var blockTable = torch.randperm(numBlocks, dtype: torch.int32, device: cuda).reshape(batch, maxBlocksPerSequence);
        var cacheSeqlens = torch.tensor(lengths, dtype: torch.int32, device: cuda);
        var output = torch.empty(batch, queryLength, queryHeads, headDimV, dtype: torch.bfloat16, device: cuda);
        var lse = torch.empty(batch, queryHeads, queryLength, dtype: torch.float32, device: cuda);

        // <torchsharp-decode>
        // libtorch works in the device's primary context, as CudaContext does, and TorchSharp
        // queues its work on the legacy default stream (handle 0): decoding there orders it after
        // the kernels that produced q and before those that read the output, with no waits.
        using var context = CudaContext.Create(q.device_index);
        using var stream = CudaStream.FromHandle(context, 0);
        using var decoder = new CudaMlaDecoder(context);
        using var plan = decoder.CreatePlan(batch, queryLength, queryHeads, kvHeads);

        var seqlens = AsDeviceTensor<int>(cacheSeqlens);
        decoder.UpdatePlan(plan, seqlens, maxBlocksPerSequence, pageBlockSize, stream);
        decoder.Decode(
            AsDeviceTensor<BFloat16>(q),
            AsDeviceTensor<BFloat16>(kCache),
            AsDeviceTensor<int>(blockTable),
            seqlens,
            plan,
            AsDeviceTensor<BFloat16>(output),
            AsDeviceTensor<float>(lse),
            stream);
        decoder.Synchronize(stream, plan);
        // </torchsharp-decode>

        Console.WriteLine($"torch: decoded on {context.Device}: sum |out| = {output.to(torch.float32).abs().sum().item<float>():F6}, sum lse = {lse.sum().item<float>():F6}");
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
            if (!torch.cuda.is_available())
            {
                reason = "TorchSharp's libtorch has no CUDA support here (a CPU-only build?)";
                return false;
            }
        }
        catch (TypeInitializationException ex)
        {
            reason = "TorchSharp could not load libtorch; reference a libtorch CUDA package (e.g. TorchSharp-cuda-linux) to run this recipe. "
                + (ex.InnerException?.Message.Split('\n')[0] ?? ex.Message);
            return false;
        }

        reason = string.Empty;
        return true;
    }
}
