using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using FlashMla.Cli.Backends;
using FlashMla.Cli.Inputs;
using FlashMla.Cli.Output;
using FlashMla.Cuda;
using FlashMla.Mla;
using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Cli.Bench;

/// <summary>Settings of one benchmark run.</summary>
internal sealed record BenchSettings(int Iterations, int Warmup, bool Graphs);

/// <summary>
/// Times CUDA decode with events. Per case: seeded lengths as in FlashMLA's test; one KV cache
/// holding <c>R</c> copies ("rotations"), each iteration using the next copy through its own block
/// table and its own q, with <c>R</c> chosen so that the data touched by one round exceeds the L2
/// four times; the plan update timed on its own; decode (split kernel + combine) timed per
/// iteration; then the same under CUDA-graph replay (one graph per rotation). Each case's buffers
/// are freed before the next case.
/// </summary>
internal sealed class CudaBenchRunner : IDisposable
{
    private const double L2Multiple = 4.0;
    private const int MaxRotations = 256;
    private const long CopyBytes = 1L << 30;
    private const int CopyRepeats = 10;
    /// <summary>Elements of random data generated on the host, then tiled over the device buffer.</summary>
    private const long RandomChunkElements = 4L << 20;

    private readonly CudaSession _session;

    private CudaBenchRunner(CudaSession session) => _session = session;

    public string GpuName => _session.GpuName;

    public string KernelPath => _session.KernelPath;

    public static bool TryCreate([NotNullWhen(true)] out CudaBenchRunner? runner, out string reason)
    {
        if (CudaSession.TryOpen(out var session, out reason))
        {
            runner = new CudaBenchRunner(session);
            return true;
        }
        runner = null;
        return false;
    }

    /// <summary>1 GiB device-to-device copy (cuMemcpyDtoDAsync), event-timed; GB/s of bytes read + written, median.</summary>
    public double MeasureCopyGBps()
    {
        var context = _session.Context;
        var stream = _session.Stream;
        using var source = DeviceBuffer<byte>.Allocate(context, CopyBytes);
        using var destination = DeviceBuffer<byte>.Allocate(context, CopyBytes);
        source.MemsetAsync(0x3C, stream);
        destination.MemsetAsync(0, stream);
        for (var i = 0; i < 2; i++)
        {
            destination.CopyFromAsync(source, stream);
        }
        var times = TimeEach(CopyRepeats, _ => destination.CopyFromAsync(source, stream));
        var median = BenchFormulas.Median(times);
        return 2.0 * CopyBytes / (median * 1e-3) / 1e9;
    }

    public BenchRecord Run(DecodeCaseSpec spec, BenchSettings settings, double copyGbps, string commit, Action<string> status)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(status);
        return spec.Dtype == ElementKind.Bf16
            ? Run<BFloat16>(spec, settings, copyGbps, commit, status)
            : Run<Half>(spec, settings, copyGbps, commit, status);
    }

    public void Dispose() => _session.Dispose();

    private BenchRecord Run<T>(DecodeCaseSpec spec, BenchSettings settings, double copyGbps, string commit, Action<string> status)
        where T : unmanaged
    {
        var context = _session.Context;
        var stream = _session.Stream;
        var decoder = _session.Decoder;
        var rng = new Gaussian(spec.Seed);

        // Lengths as in FlashMLA's test; pages per request; one copy of the cache holds exactly the pages in use.
        var seqlens = RandomDecodeInputs.SeqLens(spec, rng);
        var meanSeqLen = seqlens.Average(s => (double)s);
        var pages = seqlens.Select(s => (s + spec.PageSize - 1) / spec.PageSize).ToArray();
        var maxBlocks = Math.Max(1, pages.Max());
        var blocksPerCopy = Math.Max(1L, pages.Sum(p => (long)p));
        var kElementsPerCopy = blocksPerCopy * spec.PageSize * spec.HeadsKv * spec.HeadDim;
        var qElements = (long)spec.Batch * spec.SeqQ * spec.HeadsQ * spec.HeadDim;
        var bytesPerCopy = (kElementsPerCopy + qElements) * 2;

        var l2 = Math.Max(1L, context.Device.L2CacheSizeBytes);
        var rotations = (int)Math.Clamp(Math.Ceiling(L2Multiple * l2 / bytesPerCopy), 1, MaxRotations);
        var (freeBytes, _) = context.GetMemoryInfo();
        while (rotations > 1 && rotations * bytesPerCopy > freeBytes / 2)
        {
            rotations--;
        }
        if (rotations * blocksPerCopy > int.MaxValue)
        {
            throw new CliFailureException($"{rotations * blocksPerCopy} KV blocks do not fit int32 block ids; use a larger --page-size");
        }
        status($"    mean s_k {TableOut.F(meanSeqLen, 1)}, KV {TableOut.Bytes(kElementsPerCopy * 2)} per copy, " +
               $"{rotations} rotation(s) ({TableOut.Bytes(rotations * bytesPerCopy)} vs L2 {TableOut.Bytes(l2)})");

        // Block tables: rotation r maps each request's pages to a random permutation of blocks
        // [r·blocksPerCopy, (r+1)·blocksPerCopy); entries past a request's last page are never read.
        var blockTable = new int[(long)rotations * spec.Batch * maxBlocks];
        Array.Fill(blockTable, RandomDecodeInputs.UnusedBlockId);
        var permutation = new int[blocksPerCopy];
        for (var r = 0; r < rotations; r++)
        {
            for (var i = 0; i < permutation.Length; i++)
            {
                permutation[i] = (int)((r * blocksPerCopy) + i);
            }
            rng.Shuffle(permutation);
            var next = 0;
            for (var request = 0; request < spec.Batch; request++)
            {
                for (var p = 0; p < pages[request]; p++)
                {
                    blockTable[(((long)r * spec.Batch) + request) * maxBlocks + p] = permutation[next++];
                }
            }
        }

        var numBlocks = rotations * blocksPerCopy;
        using var kCache = DeviceBuffer<T>.Allocate(context, numBlocks * spec.PageSize * spec.HeadsKv * spec.HeadDim);
        using var q = DeviceBuffer<T>.Allocate(context, rotations * qElements);
        FillRandom(kCache, spec.Dtype, rng);
        FillRandom(q, spec.Dtype, rng);
        using var blockTables = DeviceBuffer<int>.FromHost(context, blockTable);
        using var seqlensBuffer = DeviceBuffer<int>.FromHost(context, seqlens);
        using var output = DeviceBuffer<T>.Allocate(context, (long)spec.Batch * spec.SeqQ * spec.HeadsQ * DecodeCaseSpec.HeadDimV);
        using var lse = DeviceBuffer<float>.Allocate(context, (long)spec.Batch * spec.HeadsQ * spec.SeqQ);
        using var plan = decoder.CreatePlan(spec.Batch, spec.SeqQ, spec.HeadsQ, spec.HeadsKv);

        var elementSize = Marshal.SizeOf<T>();
        var kTensor = kCache.AsTensor(numBlocks, spec.PageSize, spec.HeadsKv, spec.HeadDim);
        var seqlensTensor = seqlensBuffer.AsTensor(spec.Batch);
        var outputTensor = output.AsTensor(spec.Batch, spec.SeqQ, spec.HeadsQ, DecodeCaseSpec.HeadDimV);
        var lseTensor = lse.AsTensor(spec.Batch, spec.HeadsQ, spec.SeqQ);
        var qLayout = TensorLayout.Contiguous(spec.Batch, spec.SeqQ, spec.HeadsQ, spec.HeadDim);
        var btLayout = TensorLayout.Contiguous(spec.Batch, maxBlocks);
        var qTensors = new DeviceTensor<T>[rotations];
        var btTensors = new DeviceTensor<int>[rotations];
        for (var r = 0; r < rotations; r++)
        {
            qTensors[r] = new DeviceTensor<T>(q.Pointer + (ulong)(r * qElements * elementSize), qLayout);
            btTensors[r] = new DeviceTensor<int>(blockTables.Pointer + (ulong)((long)r * spec.Batch * maxBlocks * sizeof(int)), btLayout);
        }
        var options = new MlaDecodeOptions { Causal = spec.Causal };
        void Decode(int iteration)
        {
            var r = iteration % rotations;
            decoder.Decode(qTensors[r], kTensor, btTensors[r], seqlensTensor, plan, outputTensor, lseTensor, stream, options);
        }

        // The plan (schedule kernel), timed on its own.
        for (var i = 0; i < Math.Max(1, settings.Warmup); i++)
        {
            decoder.UpdatePlan(plan, seqlensTensor, maxBlocks, spec.PageSize, stream);
        }
        var planMs = BenchFormulas.Median(TimeEach(settings.Iterations,
            _ => decoder.UpdatePlan(plan, seqlensTensor, maxBlocks, spec.PageSize, stream)));
        decoder.Synchronize(stream, plan);

        // Decode: split kernel + combine, per iteration.
        for (var i = 0; i < settings.Warmup; i++)
        {
            Decode(i);
        }
        decoder.Synchronize(stream, plan);
        var ms = BenchFormulas.Median(TimeEach(settings.Iterations, Decode));
        decoder.Synchronize(stream, plan);

        double? graphMs = null;
        if (settings.Graphs)
        {
            graphMs = TimeGraphs(rotations, settings, Decode, status);
            decoder.Synchronize(stream, plan);
        }

        var flops = BenchFormulas.Flops(spec, meanSeqLen);
        var bytes = BenchFormulas.Bytes(spec, meanSeqLen);
        return new BenchRecord
        {
            Spec = spec,
            Backend = "cuda",
            KernelPath = _session.KernelPathFor(spec),
            MeanSeqLen = meanSeqLen,
            Ms = ms,
            GraphMs = graphMs,
            PlanMs = planMs,
            Tflops = BenchFormulas.Tflops(flops, ms),
            GBps = BenchFormulas.GBps(bytes, ms),
            GraphTflops = graphMs is { } g ? BenchFormulas.Tflops(flops, g) : null,
            GraphGBps = graphMs is { } g2 ? BenchFormulas.GBps(bytes, g2) : null,
            CopyGBps = copyGbps,
            Gpu = GpuName,
            Commit = commit,
            Iterations = settings.Iterations,
            Rotations = rotations,
        };
    }

    /// <summary>Captures one decode per rotation into a graph, replays them round-robin and times each replay.</summary>
    private double? TimeGraphs(int rotations, BenchSettings settings, Action<int> decode, Action<string> status)
    {
        var stream = _session.Stream;
        var execs = new List<CudaGraphExec>(rotations);
        try
        {
            for (var r = 0; r < rotations; r++)
            {
                var rotation = r;
                using var graph = CudaGraph.Capture(stream, () => decode(rotation));
                execs.Add(graph.Instantiate());
            }
            for (var i = 0; i < settings.Warmup; i++)
            {
                execs[i % rotations].Launch(stream);
            }
            return BenchFormulas.Median(TimeEach(settings.Iterations, i => execs[i % rotations].Launch(stream)));
        }
        catch (CudaException e)
        {
            status($"    CUDA graph timing skipped: {e.Message}");
            return null;
        }
        finally
        {
            foreach (var exec in execs)
            {
                exec.Dispose();
            }
        }
    }

    /// <summary>Runs <paramref name="body"/> <paramref name="count"/> times on the stream, each between two events; returns the times in ms.</summary>
    private List<double> TimeEach(int count, Action<int> body)
    {
        var context = _session.Context;
        var stream = _session.Stream;
        var starts = new CudaEvent[count];
        var ends = new CudaEvent[count];
        try
        {
            for (var i = 0; i < count; i++)
            {
                starts[i] = CudaEvent.Create(context);
                ends[i] = CudaEvent.Create(context);
            }
            for (var i = 0; i < count; i++)
            {
                starts[i].Record(stream);
                body(i);
                ends[i].Record(stream);
            }
            ends[count - 1].Synchronize();
            var times = new List<double>(count);
            for (var i = 0; i < count; i++)
            {
                times.Add(CudaEvent.ElapsedMilliseconds(starts[i], ends[i]));
            }
            return times;
        }
        finally
        {
            foreach (var e in starts)
            {
                e?.Dispose();
            }
            foreach (var e in ends)
            {
                e?.Dispose();
            }
        }
    }

    /// <summary>Fills a device buffer with N(0,1)/10 clamped to [−1, 1]: a host chunk, uploaded, then tiled on the device.</summary>
    private void FillRandom<T>(DeviceBuffer<T> buffer, ElementKind kind, Gaussian rng)
        where T : unmanaged
    {
        var stream = _session.Stream;
        var chunk = new ushort[Math.Min(buffer.Length, RandomChunkElements)];
        RandomDecodeInputs.FillRandom(chunk, kind, rng);
        buffer.CopyFrom(MemoryMarshal.Cast<ushort, T>(chunk));
        var filled = (long)chunk.Length;
        while (filled < buffer.Length)
        {
            var count = Math.Min(filled, buffer.Length - filled);
            buffer.CopyFromAsync(buffer, stream, count, 0, filled);
            filled += count;
        }
        stream.Synchronize();
    }
}
