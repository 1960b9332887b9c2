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

    public long? FreeDeviceBytes => _session.Context.GetMemoryInfo().FreeBytes;

    public string TimingNote => "CUDA events around each call's split kernel + combine";

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

    public DecodeOutputs Decode<T>(DecodeCase<T> inputs, DecodeTiming timing)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(timing);
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
        double coldMs;
        double[] warmMs;
        void Decode() => decoder.Decode(qTensor, kTensor, blockTableTensor, seqlensTensor, plan, outputTensor, lseTensor, stream, options);

        // The first call (cold: the first launch of each kernel pays one-off costs), the warm-up,
        // then each timed call between its own two events; every call writes the same values.
        var events = new List<CudaEvent>();
        try
        {
            (CudaEvent Start, CudaEvent End) Timed()
            {
                var start = CudaEvent.Create(context);
                events.Add(start);
                var end = CudaEvent.Create(context);
                events.Add(end);
                start.Record(stream);
                Decode();
                end.Record(stream);
                return (start, end);
            }

            var cold = Timed();
            decoder.Synchronize(stream, plan);
            for (var i = 0; i < timing.Warmup; i++)
            {
                Decode();
            }
            var warm = new (CudaEvent Start, CudaEvent End)[timing.Repeat];
            for (var i = 0; i < warm.Length; i++)
            {
                warm[i] = Timed();
            }
            decoder.Synchronize(stream, plan);
            coldMs = CudaEvent.ElapsedMilliseconds(cold.Start, cold.End);
            warmMs = [.. warm.Select(w => (double)CudaEvent.ElapsedMilliseconds(w.Start, w.End))];
        }
        finally
        {
            foreach (var e in events)
            {
                e.Dispose();
            }
        }

        var outHost = new T[output.Length];
        output.CopyTo(outHost);
        var lseHost = new float[lse.Length];
        lse.CopyTo(lseHost);
        return new DecodeOutputs
        {
            Output = TestTensors.ToDoubleArray(new HostTensor<T>(outHost, TensorLayout.Contiguous(inputs.OutputShape))),
            Lse = [.. lseHost.Select(v => (double)v)],
            ColdMs = coldMs,
            WarmMs = warmMs,
        };
    }
}
