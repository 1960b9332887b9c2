using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using FlashMla.Cli.Backends;
using FlashMla.Cli.Output;
using FlashMla.Cuda;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Cli.Bench;

/// <summary>Settings of one benchmark run: the per-call timing's iterations and warm-up, and whether graph_us is measured.</summary>
internal sealed record BenchSettings(int Iterations, int Warmup, bool Graphs);

/// <summary>
/// Times CUDA decode. Per case: the case's lengths; one KV cache holding <c>R</c> copies
/// ("rotations", <see cref="BenchMethod.Rotations"/>), each with its own q and its own block table
/// with the pages in random order; the plan update timed on its own; decode (split kernel +
/// combine) timed per call with events (<c>ms</c>, host launch cost included); then the shared
/// method's <c>graph_us</c> (<see cref="BenchMethod"/>): one graph of K decode calls, replayed.
/// Each case's buffers are freed before the next case.
/// </summary>
internal sealed class CudaBenchRunner : IDisposable
{
    private const long CopyBytes = 1L << 30;
    private const int CopyRepeats = 10;
    /// <summary>Elements of random data generated on the host, then tiled over the device buffer.</summary>
    private const long RandomChunkElements = 4L << 20;

    private readonly CudaSession _session;
    private CudaKvCacheWriter? _writer;

    private CudaBenchRunner(CudaSession session) => _session = session;

    public string GpuName => _session.GpuName;

    public string KernelPath => _session.KernelPath;

    public CudaDevice Device => _session.Context.Device;

    /// <summary>The device's free memory now, in bytes.</summary>
    public long FreeMemoryBytes => _session.Context.GetMemoryInfo().FreeBytes;

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

    /// <summary>Runs one case.</summary>
    /// <param name="benchCase">The case.</param>
    /// <param name="settings">Iterations, warm-up, graphs.</param>
    /// <param name="copyGbps">The copy baseline of this run.</param>
    /// <param name="commit">The commit recorded.</param>
    /// <param name="readSmClock">Reads the SM clock (MHz) while the timed replays run; null when it cannot.</param>
    /// <param name="status">Progress lines.</param>
    public BenchRecord Run(BenchCase benchCase, BenchSettings settings, double copyGbps, string commit, Func<int?> readSmClock, Action<string> status)
    {
        ArgumentNullException.ThrowIfNull(benchCase);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(readSmClock);
        ArgumentNullException.ThrowIfNull(status);
        return benchCase.Spec.ElementType == ElementType.BFloat16
            ? Run<BFloat16>(benchCase, settings, copyGbps, commit, readSmClock, status)
            : Run<Half>(benchCase, settings, copyGbps, commit, readSmClock, status);
    }

    /// <summary>
    /// Times one KV cache append case: the sources, pages and slot mappings in R rotations
    /// (<see cref="BenchMethod.Rotations"/> over <see cref="AppendBenchCase.BytesPerRotation"/>),
    /// appends per call with events (<c>ms</c>), then one graph of K appends replayed (<c>graph_us</c>).
    /// </summary>
    public AppendBenchRecord RunAppend(AppendBenchCase benchCase, BenchSettings settings, double copyGbps, string commit, Func<int?> readSmClock, Action<string> status)
    {
        ArgumentNullException.ThrowIfNull(benchCase);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(readSmClock);
        ArgumentNullException.ThrowIfNull(status);
        return benchCase.ElementType == ElementType.BFloat16
            ? RunAppend<BFloat16>(benchCase, settings, copyGbps, commit, readSmClock, status)
            : RunAppend<Half>(benchCase, settings, copyGbps, commit, readSmClock, status);
    }

    public void Dispose()
    {
        _writer?.Dispose();
        _session.Dispose();
    }

    private AppendBenchRecord RunAppend<T>(AppendBenchCase c, BenchSettings settings, double copyGbps, string commit, Func<int?> readSmClock, Action<string> status)
        where T : unmanaged
    {
        var context = _session.Context;
        var stream = _session.Stream;
        var writer = _writer ??= new CudaKvCacheWriter(context);
        var rng = new Gaussian(c.Seed);
        var l2 = Math.Max(1L, context.Device.L2CacheSizeBytes);
        var (freeBytes, _) = context.GetMemoryInfo();
        var rotations = BenchMethod.Rotations(c.BytesPerRotation, l2, (long)freeBytes);
        var callsPerGraph = BenchMethod.CallsPerGraph(rotations);
        status($"    {TableOut.Bytes(c.Bytes)} moved per append, {rotations} rotation(s) ({TableOut.Bytes(rotations * c.BytesPerRotation)} vs L2 {TableOut.Bytes(l2)}), " +
               $"{callsPerGraph} appends per graph, {writer.GridFor(c.Tokens, c.KvHeads)} CTAs of {writer.Kernel.Threads} threads");

        var n = c.Tokens;
        var rowElements = (long)n * c.KvHeads * AppendBenchCase.HeadDim;
        var compressed = MlaDecodeValidation.SupportedHeadDimV;
        var rope = AppendBenchCase.HeadDim - compressed;
        var pages = rotations * c.PagesPerRotation;
        using var kCache = DeviceBuffer<T>.Allocate(context, pages * c.PageBlockSize * c.KvHeads * AppendBenchCase.HeadDim);
        using var sources = DeviceBuffer<T>.Allocate(context, rotations * rowElements);
        using var slotBuffer = DeviceBuffer<int>.FromHost(context, c.SlotMappings(rotations, span => rng.Shuffle(span)));
        kCache.MemsetAsync(0, stream);
        FillRandom(sources, rng);
        var cacheTensor = kCache.AsTensor(pages, c.PageBlockSize, c.KvHeads, AppendBenchCase.HeadDim);
        var elementSize = (ulong)Marshal.SizeOf<T>();
        var latent = new DeviceTensor<T>[rotations];
        var nope = new DeviceTensor<T>[rotations];
        var ropes = new DeviceTensor<T>[rotations];
        var slots = new DeviceTensor<int>[rotations];
        for (var r = 0; r < rotations; r++)
        {
            // The split form reads the same memory as two tensors: [n, h_kv, 512] of rotation r's
            // first part and [n, h_kv, 64] of its second.
            var at = sources.Pointer + ((ulong)(r * rowElements) * elementSize);
            latent[r] = new DeviceTensor<T>(at, TensorLayout.Contiguous(n, c.KvHeads, AppendBenchCase.HeadDim));
            nope[r] = new DeviceTensor<T>(at, TensorLayout.Contiguous(n, c.KvHeads, compressed));
            ropes[r] = new DeviceTensor<T>(at + ((ulong)((long)n * c.KvHeads * compressed) * elementSize), TensorLayout.Contiguous(n, c.KvHeads, rope));
            slots[r] = new DeviceTensor<int>(slotBuffer.Pointer + ((ulong)((long)r * n) * sizeof(int)), TensorLayout.Contiguous(n));
        }

        void Append(int call)
        {
            var r = call % rotations;
            if (c.Split)
            {
                writer.Append(nope[r], ropes[r], slots[r], cacheTensor, stream);
            }
            else
            {
                writer.Append(latent[r], slots[r], cacheTensor, stream);
            }
        }

        for (var i = 0; i < settings.Warmup; i++)
        {
            Append(i);
        }
        writer.Synchronize(stream);
        var ms = BenchFormulas.Median(TimeEach(settings.Iterations, Append));
        writer.Synchronize(stream);

        int? smClock = null;
        var replayMs = TimeGraph(callsPerGraph, Append, () => smClock = readSmClock());
        writer.Synchronize(stream);
        var perCall = BenchMethod.PerCallMicroseconds(replayMs, callsPerGraph);
        return new AppendBenchRecord
        {
            Case = c,
            Ms = ms,
            GraphUs = BenchMethod.GraphMicroseconds(replayMs, callsPerGraph),
            GraphUsMin = perCall.Min(),
            GraphUsMax = perCall.Max(),
            Rotations = rotations,
            CallsPerGraph = callsPerGraph,
            GraphReplays = BenchMethod.TimedReplays,
            Iterations = settings.Iterations,
            CopyGBps = copyGbps,
            Ctas = writer.GridFor(c.Tokens, c.KvHeads),
            Threads = writer.Kernel.Threads,
            SmClockMhz = smClock,
            Gpu = GpuName,
            Commit = commit,
        };
    }

    private BenchRecord Run<T>(BenchCase benchCase, BenchSettings settings, double copyGbps, string commit, Func<int?> readSmClock, Action<string> status)
        where T : unmanaged
    {
        var spec = benchCase.Spec;
        var context = _session.Context;
        var stream = _session.Stream;
        var decoder = _session.Decoder;
        var rng = new Gaussian(spec.Seed);
        var elementSize = Marshal.SizeOf<T>();
        if (elementSize != BenchFormulas.ElementSize(spec.ElementType))
        {
            throw new InvalidOperationException($"{typeof(T).Name} is {elementSize} bytes, but {spec.ElementType.ShortName()} is {BenchFormulas.ElementSize(spec.ElementType)}");
        }

        // Pages per request; one copy of the cache holds exactly the pages in use.
        var seqlens = benchCase.SeqLens.ToArray();
        if (seqlens.Length != spec.Batch)
        {
            throw new InvalidOperationException($"case {benchCase.Name}: {seqlens.Length} lengths for b = {spec.Batch}");
        }
        var meanSeqLen = benchCase.MeanSeqLen;
        var pages = seqlens.Select(s => (int)CaseBudget.PagesOf(s, spec.PageBlockSize)).ToArray();
        var maxBlocks = Math.Max(1, pages.Max());
        var blocksPerCopy = Math.Max(1L, pages.Sum(p => (long)p));
        var kElementsPerCopy = blocksPerCopy * spec.PageBlockSize * spec.KvHeads * spec.HeadDim;
        var qElements = (long)spec.Batch * spec.QueryLength * spec.QueryHeads * spec.HeadDim;
        var bytesPerCopy = BenchMethod.BytesPerCopy(blocksPerCopy, spec.PageBlockSize, spec.KvHeads, spec.HeadDim, qElements, elementSize);

        var l2 = Math.Max(1L, context.Device.L2CacheSizeBytes);
        var (freeBytes, _) = context.GetMemoryInfo();
        var rotations = BenchMethod.Rotations(bytesPerCopy, l2, (long)freeBytes);
        var callsPerGraph = settings.Graphs ? BenchMethod.CallsPerGraph(rotations) : 0;
        status($"    mean s_k {TableOut.F(meanSeqLen, 1)}, KV {TableOut.Bytes(kElementsPerCopy * elementSize)} per copy, " +
               $"{rotations} rotation(s) ({TableOut.Bytes(rotations * bytesPerCopy)} vs L2 {TableOut.Bytes(l2)})" +
               (settings.Graphs ? $", {callsPerGraph} calls per graph" : ""));

        var blockTable = BenchMethod.BlockTables(pages, rotations, maxBlocks, RandomInputs.UnusedBlockId, span => rng.Shuffle(span));
        var numBlocks = rotations * blocksPerCopy;
        using var kCache = DeviceBuffer<T>.Allocate(context, numBlocks * spec.PageBlockSize * spec.KvHeads * spec.HeadDim);
        using var q = DeviceBuffer<T>.Allocate(context, rotations * qElements);
        FillRandom(kCache, rng);
        FillRandom(q, rng);
        using var blockTables = DeviceBuffer<int>.FromHost(context, blockTable);
        using var seqlensBuffer = DeviceBuffer<int>.FromHost(context, seqlens);
        using var output = DeviceBuffer<T>.Allocate(context, (long)spec.Batch * spec.QueryLength * spec.QueryHeads * DecodeCaseSpec.HeadDimV);
        using var lse = DeviceBuffer<float>.Allocate(context, (long)spec.Batch * spec.QueryHeads * spec.QueryLength);
        using var plan = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);

        var kTensor = kCache.AsTensor(numBlocks, spec.PageBlockSize, spec.KvHeads, spec.HeadDim);
        var seqlensTensor = seqlensBuffer.AsTensor(spec.Batch);
        var outputTensor = output.AsTensor(spec.Batch, spec.QueryLength, spec.QueryHeads, DecodeCaseSpec.HeadDimV);
        var lseTensor = lse.AsTensor(spec.Batch, spec.QueryHeads, spec.QueryLength);
        var qLayout = TensorLayout.Contiguous(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.HeadDim);
        var btLayout = TensorLayout.Contiguous(spec.Batch, maxBlocks);
        var qTensors = new DeviceTensor<T>[rotations];
        var btTensors = new DeviceTensor<int>[rotations];
        for (var r = 0; r < rotations; r++)
        {
            qTensors[r] = new DeviceTensor<T>(q.Pointer + (ulong)(r * qElements * elementSize), qLayout);
            btTensors[r] = new DeviceTensor<int>(blockTables.Pointer + (ulong)((long)r * spec.Batch * maxBlocks * sizeof(int)), btLayout);
        }
        var options = new MlaDecodeOptions { Causal = spec.Causal };
        void Decode(int call)
        {
            var r = call % rotations;
            decoder.Decode(qTensors[r], kTensor, btTensors[r], seqlensTensor, plan, outputTensor, lseTensor, stream, options);
        }

        // The plan (schedule kernel), timed on its own. The last update stays in force: every
        // decode below, the graph's included, uses it.
        for (var i = 0; i < Math.Max(1, settings.Warmup); i++)
        {
            decoder.UpdatePlan(plan, seqlensTensor, maxBlocks, spec.PageBlockSize, stream);
        }
        var planMs = BenchFormulas.Median(TimeEach(settings.Iterations,
            _ => decoder.UpdatePlan(plan, seqlensTensor, maxBlocks, spec.PageBlockSize, stream)));
        decoder.Synchronize(stream, plan);

        // Decode per call: split kernel + combine between two events, host launch cost included.
        for (var i = 0; i < settings.Warmup; i++)
        {
            Decode(i);
        }
        decoder.Synchronize(stream, plan);
        var ms = BenchFormulas.Median(TimeEach(settings.Iterations, Decode));
        decoder.Synchronize(stream, plan);

        var kernel = _session.DescribeKernel(spec, maxBlocks);
        double? graphUs = null, graphMin = null, graphMax = null, singleUs = null;
        int? smClock = null;
        if (settings.Graphs)
        {
            var replayMs = TimeGraph(callsPerGraph, Decode, () => smClock = readSmClock());
            decoder.Synchronize(stream, plan);
            var perCall = BenchMethod.PerCallMicroseconds(replayMs, callsPerGraph);
            graphUs = BenchMethod.GraphMicroseconds(replayMs, callsPerGraph);
            graphMin = perCall.Min();
            graphMax = perCall.Max();
            singleUs = BenchFormulas.Median(TimeSingleCalls(rotations, Decode)) * 1000.0;
            decoder.Synchronize(stream, plan);
        }
        else
        {
            smClock = readSmClock();
        }

        return new BenchRecord
        {
            Case = benchCase,
            Backend = "cuda",
            KernelPath = kernel.ToString(),
            Ms = ms,
            PlanMs = planMs,
            GraphUs = graphUs,
            GraphUsMin = graphMin,
            GraphUsMax = graphMax,
            SingleGraphUs = singleUs,
            Launch = (kernel.MergesInKernel ? "merge-in-kernel" : "combine-kernel") + (decoder.DependentLaunch ? "+pdl" : ""),
            Rotations = rotations,
            CallsPerGraph = callsPerGraph,
            GraphReplays = settings.Graphs ? BenchMethod.TimedReplays : 0,
            Iterations = settings.Iterations,
            CopyGBps = copyGbps,
            SmClockMhz = smClock,
            Gpu = GpuName,
            Commit = commit,
        };
    }

    /// <summary>
    /// Captures <paramref name="callsPerGraph"/> consecutive decode calls (call i on rotation
    /// i mod R) into one graph, replays it <see cref="BenchMethod.WarmupReplays"/> times, then
    /// <see cref="BenchMethod.TimedReplays"/> times, each between two events and waited for before
    /// the next is enqueued (as on the FlashMLA side); returns the replay times in ms.
    /// <paramref name="whileRunning"/> runs once, while the middle timed replay is on the GPU.
    /// </summary>
    private List<double> TimeGraph(int callsPerGraph, Action<int> decode, Action whileRunning)
    {
        var context = _session.Context;
        var stream = _session.Stream;
        stream.Synchronize();
        using var graph = CudaGraph.Capture(stream, () =>
        {
            for (var i = 0; i < callsPerGraph; i++)
            {
                decode(i);
            }
        });
        using var exec = graph.Instantiate();
        for (var i = 0; i < BenchMethod.WarmupReplays; i++)
        {
            exec.Launch(stream);
        }
        stream.Synchronize();

        using var start = CudaEvent.Create(context);
        using var end = CudaEvent.Create(context);
        var times = new List<double>(BenchMethod.TimedReplays);
        for (var i = 0; i < BenchMethod.TimedReplays; i++)
        {
            start.Record(stream);
            exec.Launch(stream);
            end.Record(stream);
            if (i == BenchMethod.TimedReplays / 2)
            {
                whileRunning();
            }
            end.Synchronize();
            times.Add(CudaEvent.ElapsedMilliseconds(start, end));
        }
        return times;
    }

    /// <summary>
    /// One graph of a single decode call per rotation; after the warm-up replays, launches them in
    /// turn (rotation i mod R, as the K-call graph does), each between two events and waited for;
    /// returns the times in ms.
    /// </summary>
    private List<double> TimeSingleCalls(int rotations, Action<int> decode)
    {
        var context = _session.Context;
        var stream = _session.Stream;
        stream.Synchronize();
        var graphs = new List<CudaGraph>();
        var execs = new List<CudaGraphExec>();
        try
        {
            for (var r = 0; r < rotations; r++)
            {
                var rotation = r;
                graphs.Add(CudaGraph.Capture(stream, () => decode(rotation)));
                execs.Add(graphs[^1].Instantiate());
            }

            var count = Math.Max(BenchMethod.TimedReplays, rotations);
            for (var i = 0; i < BenchMethod.WarmupReplays * rotations; i++)
            {
                execs[i % rotations].Launch(stream);
            }
            stream.Synchronize();
            using var start = CudaEvent.Create(context);
            using var end = CudaEvent.Create(context);
            var times = new List<double>(count);
            for (var i = 0; i < count; i++)
            {
                start.Record(stream);
                execs[i % rotations].Launch(stream);
                end.Record(stream);
                end.Synchronize();
                times.Add(CudaEvent.ElapsedMilliseconds(start, end));
            }
            return times;
        }
        finally
        {
            foreach (var e in execs)
            {
                e.Dispose();
            }

            foreach (var g in graphs)
            {
                g.Dispose();
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
    private void FillRandom<T>(DeviceBuffer<T> buffer, Gaussian rng)
        where T : unmanaged
    {
        var stream = _session.Stream;
        var chunk = new T[Math.Min(buffer.Length, RandomChunkElements)];
        RandomInputs.Fill<T>(chunk, rng);
        buffer.CopyFrom(chunk);
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
