using System.Diagnostics.CodeAnalysis;
using FlashMla.Cuda;
using FlashMla.Mla.Cuda;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Cli.Backends;

/// <summary>The library's CUDA decoder, <see cref="CudaMlaDecoder"/>, on device 0.</summary>
internal sealed class CudaBackend : IDecodeBackend
{
    /// <summary>The outputs are poisoned before a decode with <see cref="TestTensors"/>' NaN patterns, two 16-bit ones per word.</summary>
    private const uint PoisonPair = ((uint)TestTensors.PoisonBits16 << 16) | TestTensors.PoisonBits16;

    private readonly CudaSession _session;

    private CudaBackend(CudaSession session) => _session = session;

    public string Name => "cuda";

    public string Device => _session.DeviceDescription;

    public string KernelPath => _session.KernelPath;

    public KernelPathInfo? DescribeKernel(DecodeCaseSpec spec, int maxBlocksPerSequence) => _session.DescribeKernel(spec, maxBlocksPerSequence);

    public string TimingNote => "CUDA events around split kernel + combine, after one untimed decode";

    public static bool TryCreate([NotNullWhen(true)] out CudaBackend? backend, out string reason)
    {
        if (CudaSession.TryOpen(out var session, out reason))
        {
            backend = new CudaBackend(session);
            return true;
        }
        backend = null;
        return false;
    }

    /// <summary>The kernels round P to the input type before the PV product, as FlashMLA's do.</summary>
    public Tolerance OutputTolerance(ElementType type) => Tolerance.ForOutput(type, roundsProbabilities: true);

    public void Dispose() => _session.Dispose();

    public DecodeOutputs Decode<T>(DecodeCase<T> inputs)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var context = _session.Context;
        var stream = _session.Stream;
        var decoder = _session.Decoder;
        var spec = inputs.Spec;

        // Each input is uploaded with its layout; the outputs are contiguous.
        using var q = DeviceBuffer<T>.FromHost(context, inputs.Q.Span);
        using var kCache = DeviceBuffer<T>.FromHost(context, inputs.KCache.Span);
        using var blockTable = DeviceBuffer<int>.FromHost(context, inputs.BlockTable.Span);
        using var seqlens = DeviceBuffer<int>.FromHost(context, inputs.CacheSeqlens.Span);
        using var output = DeviceBuffer<T>.Allocate(context, TensorLayout.Contiguous(inputs.OutputShape).ElementCount);
        using var lse = DeviceBuffer<float>.Allocate(context, TensorLayout.Contiguous(inputs.LseShape).ElementCount);
        output.MemsetD32Async(PoisonPair, stream);
        lse.MemsetD32Async(TestTensors.PoisonBits32, stream);

        using var plan = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        var seqlensTensor = seqlens.AsTensor(inputs.CacheSeqlens.Layout);
        decoder.UpdatePlan(plan, seqlensTensor, inputs.MaxBlocksPerSequence, spec.PageBlockSize, stream);

        var qTensor = q.AsTensor(inputs.Q.Layout);
        var kTensor = kCache.AsTensor(inputs.KCache.Layout);
        var blockTableTensor = blockTable.AsTensor(inputs.BlockTable.Layout);
        var outputTensor = output.AsTensor(inputs.OutputShape);
        var lseTensor = lse.AsTensor(inputs.LseShape);
        var options = inputs.Options;
        void Decode() => decoder.Decode(qTensor, kTensor, blockTableTensor, seqlensTensor, plan, outputTensor, lseTensor, stream, options);

        // The first launch of a kernel pays one-off costs; time the second (it writes the same values).
        Decode();
        using var start = CudaEvent.Create(context);
        using var end = CudaEvent.Create(context);
        start.Record(stream);
        Decode();
        end.Record(stream);
        decoder.Synchronize(stream, plan);

        var outHost = new T[output.Length];
        output.CopyTo(outHost);
        var lseHost = new float[lse.Length];
        lse.CopyTo(lseHost);
        return new DecodeOutputs
        {
            Output = TestTensors.ToDoubleArray(new HostTensor<T>(outHost, TensorLayout.Contiguous(inputs.OutputShape))),
            Lse = [.. lseHost.Select(v => (double)v)],
            ElapsedMs = CudaEvent.ElapsedMilliseconds(start, end),
        };
    }
}
