using System.Diagnostics;
using System.Runtime.InteropServices;
using FlashMla.Cli.Inputs;
using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Mla.Cuda;
using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Cli.Backends;

/// <summary>The library's CPU decoder, <see cref="CpuMlaDecoder"/>.</summary>
internal sealed class CpuBackend : IDecodeBackend
{
    private readonly CpuMlaDecoder _decoder = new();

    public string Name => "cpu";

    public string Device => $"CPU, {Environment.ProcessorCount} threads";

    public string KernelPath => "cpu split-kv float32";

    public KernelPathInfo? DescribeKernel(DecodeCaseSpec spec, int maxBlocksPerSequence) => null;

    public string TimingNote => "wall clock of the decode call";

    public DecodeOutputs Decode(DecodeInputs inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        return inputs.Spec.Dtype == ElementType.BFloat16 ? Run<BFloat16>(inputs) : Run<Half>(inputs);
    }

    public void Dispose()
    {
    }

    private DecodeOutputs Run<T>(DecodeInputs inputs)
        where T : unmanaged
    {
        var q = HostTensors.FromBits<T>(inputs.Q, inputs.QShape);
        var kCache = HostTensors.FromBits<T>(inputs.KCache, inputs.KShape);
        var blockTable = new HostTensor<int>(inputs.BlockTable, TensorLayout.Contiguous(inputs.BlockTableShape));
        var seqlens = new HostTensor<int>(inputs.Seqlens, TensorLayout.Contiguous(inputs.Spec.Batch));
        var output = HostTensor<T>.Create(inputs.OutputShape);
        var lse = HostTensor<float>.Create(inputs.LseShape);
        var options = new MlaDecodeOptions { Causal = inputs.Spec.Causal };

        var stopwatch = Stopwatch.StartNew();
        _decoder.Decode(q, kCache, blockTable, seqlens, output, lse, options);
        stopwatch.Stop();

        return new DecodeOutputs
        {
            Output = HostTensors.Widen(inputs.Spec.Dtype, output),
            Lse = lse.Span.ToArray(),
            ElapsedMs = stopwatch.Elapsed.TotalMilliseconds,
        };
    }
}

/// <summary>Host tensors over the CLI's 16-bit patterns.</summary>
internal static class HostTensors
{
    public static HostTensor<T> FromBits<T>(ushort[] bits, long[] shape)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(bits);
        var data = new T[bits.Length];
        MemoryMarshal.Cast<ushort, T>(bits).CopyTo(data);
        return new HostTensor<T>(data, TensorLayout.Contiguous(shape));
    }

    public static float[] Widen<T>(ElementType kind, HostTensor<T> tensor)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var bits = MemoryMarshal.Cast<T, ushort>(tensor.Span);
        var result = new float[bits.Length];
        ElementBits.Widen(kind, bits, result);
        return result;
    }
}
