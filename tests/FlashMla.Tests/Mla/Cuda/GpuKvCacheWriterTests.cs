using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Mla.Cuda;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cuda;

/// <summary>
/// The CUDA KV cache writer against the CPU writer, bit for bit over the whole memory of a
/// NaN-poisoned cache (so only the addressed slots change), once per element type: both input
/// forms, padded layouts, h_kv &gt; 1, the guarded slots (error record, nothing written outside,
/// context still usable), graph capture and replay, and the device-side argument checks.
/// Skipped with the reason where there is no CUDA device.
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
[Collection(GpuCollection.Name)]
public abstract class GpuKvCacheWriterTests<T>(GpuFixture gpu)
    where T : unmanaged
{
    private readonly CpuKvCacheWriter _cpu = new();

    public static TheoryData<int, int, int, int, int, bool, int> Cases => new()
    {
        // n, num_blocks, page, h_kv, d, padded, padding tokens
        { 1, 1, 64, 1, 576, false, 0 },
        { 31, 4, 16, 1, 576, false, 3 },
        { 33, 3, 64, 1, 576, true, 2 },
        { 128, 3, 64, 1, 576, false, 10 },
        { 17, 4, 8, 2, 576, false, 1 },
        { 45, 10, 5, 3, 576, true, 4 },
        { 70, 3, 32, 1, 512, false, 5 },
        { 9, 2, 8, 2, 512, true, 0 },
        { 0, 2, 4, 1, 576, false, 0 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Latent_EqualsTheCpuWriter(int n, int numBlocks, int page, int kvHeads, int headDim, bool padded, int paddingTokens)
    {
        var (writer, stream) = Setup();
        using var _ = writer;
        var c = KvAppendCase<T>.Create(n, numBlocks, page, kvHeads, headDim, padded, paddingTokens, TestSeeds.Next());
        using var device = DeviceCase.Upload(c, stream);
        writer.Append(device.Latent, device.SlotMapping, device.KCache, stream);
        writer.Synchronize(stream);
        _cpu.Append(c.Latent, c.SlotMapping, c.KCache);
        KvAppendCase<T>.AssertBitwiseEqual(c.KCache.Span, device.ReadCache(stream), c.Description);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Split_EqualsTheCpuWriter(int n, int numBlocks, int page, int kvHeads, int headDim, bool padded, int paddingTokens)
    {
        if (headDim != KvCacheAppendValidation.LatentDim)
        {
            return;
        }

        var (writer, stream) = Setup();
        using var _ = writer;
        var c = KvAppendCase<T>.Create(n, numBlocks, page, kvHeads, headDim, padded, paddingTokens, TestSeeds.Next());
        using var device = DeviceCase.Upload(c, stream);
        writer.Append(device.CompressedKv, device.Rope, device.SlotMapping, device.KCache, stream);
        writer.Synchronize(stream);
        _cpu.Append(c.CompressedKv, c.Rope, c.SlotMapping, c.KCache);
        KvAppendCase<T>.AssertBitwiseEqual(c.KCache.Span, device.ReadCache(stream), c.Description);
    }

    [Fact]
    public void LargeAppend_EqualsTheCpuWriter()
    {
        if (GpuFixture.Quick)
        {
            return;
        }

        var (writer, stream) = Setup();
        using var _ = writer;
        var c = KvAppendCase<T>.Create(20_000, 400, 64, 1, 576, false, 100, TestSeeds.Next());
        using var device = DeviceCase.Upload(c, stream);
        writer.Append(device.CompressedKv, device.Rope, device.SlotMapping, device.KCache, stream);
        writer.Synchronize(stream);
        _cpu.Append(c.CompressedKv, c.Rope, c.SlotMapping, c.KCache);
        KvAppendCase<T>.AssertBitwiseEqual(c.KCache.Span, device.ReadCache(stream), c.Description);
    }

    [Fact]
    public void BadSlots_RaiseAtSynchronize_NamingTheLowestToken_WriteNothingOutside_ThenTheWriterWorks()
    {
        var (writer, stream) = Setup();
        using var _ = writer;
        var c = KvAppendCase<T>.Create(40, 4, 16, 1, 576, false, 3, TestSeeds.Next());
        var slots = c.Slots.ToArray();
        slots[11] = 4 * 16;       // one past the last slot
        slots[25] = -7;
        slots[30] = int.MaxValue;
        using var device = DeviceCase.Upload(c, stream);
        device.SlotBuffer.CopyFromAsync(KvAppendCase<T>.SlotTensor(slots, false).Span, stream);
        writer.Append(device.Latent, device.SlotMapping, device.KCache, stream);
        var ex = Assert.Throws<MlaInputException>(() => writer.Synchronize(stream));
        Assert.Equal(MlaInputError.SlotOutOfRange, ex.Reason);
        Assert.Equal(11, ex.TokenIndex);
        Assert.Equal(64, ex.Slot);
        Assert.Contains("slotMapping[11] = 64", ex.Message, StringComparison.Ordinal);
        Assert.Contains("3 tokens", ex.Message, StringComparison.Ordinal);

        // The other tokens were written, the bad ones nowhere: the CPU writer with them as padding.
        var asPadding = slots.Select(s => s < -1 || s >= 64 ? -1 : s).ToArray();
        _cpu.Append(c.Latent, KvAppendCase<T>.SlotTensor(asPadding, false), c.KCache);
        KvAppendCase<T>.AssertBitwiseEqual(c.KCache.Span, device.ReadCache(stream), c.Description + " (bad slots)");

        // The record was cleared; a valid append synchronizes cleanly and is right.
        writer.Synchronize(stream);
        var next = KvAppendCase<T>.Create(40, 4, 16, 1, 576, false, 3, TestSeeds.Next());
        using var nextDevice = DeviceCase.Upload(next, stream);
        writer.Append(nextDevice.Latent, nextDevice.SlotMapping, nextDevice.KCache, stream);
        writer.Synchronize(stream);
        _cpu.Append(next.Latent, next.SlotMapping, next.KCache);
        KvAppendCase<T>.AssertBitwiseEqual(next.KCache.Span, nextDevice.ReadCache(stream), next.Description);
    }

    [Fact]
    public void CheckedMode_RaisesAtAppend()
    {
        var (writer, stream) = Setup();
        using var _ = writer;
        var c = KvAppendCase<T>.Create(8, 2, 4, 1, 576, false, 0, TestSeeds.Next());
        var slots = c.Slots.ToArray();
        slots[5] = -3;
        using var device = DeviceCase.Upload(c, stream);
        device.SlotBuffer.CopyFromAsync(slots, stream);
        writer.CheckedMode = true;
        var ex = Assert.Throws<MlaInputException>(() => writer.Append(device.Latent, device.SlotMapping, device.KCache, stream));
        Assert.Equal(5, ex.TokenIndex);
        Assert.Equal(-3, ex.Slot);
        writer.Synchronize(stream); // already reported and cleared
    }

    [Fact]
    public void GraphCapture_ReplaysTakeTheSlotMappingOfEachStep()
    {
        var (writer, _) = Setup();
        using var __ = writer;
        using var stream = CudaStream.Create(writer.Context, nonBlocking: true);
        var c = KvAppendCase<T>.Create(24, 4, 16, 1, 576, false, 2, TestSeeds.Next());
        using var device = DeviceCase.Upload(c, stream);
        stream.Synchronize();
        using var graph = CudaGraph.Capture(stream, () => writer.Append(device.CompressedKv, device.Rope, device.SlotMapping, device.KCache, stream));
        using var exec = graph.Instantiate();
        var rng = new Random(TestSeeds.Next());
        for (var replay = 0; replay < 3; replay++)
        {
            // A new step: fresh slots in the same device buffer, read by the replayed kernel.
            var all = Enumerable.Range(0, 64).ToArray();
            rng.Shuffle(all);
            var slots = all.Take(24).ToArray();
            slots[replay] = -1;
            device.SlotBuffer.CopyFromAsync(slots, stream);
            exec.Launch(stream);
            writer.Synchronize(stream);
            _cpu.Append(c.CompressedKv, c.Rope, KvAppendCase<T>.SlotTensor(slots, false), c.KCache);
            KvAppendCase<T>.AssertBitwiseEqual(c.KCache.Span, device.ReadCache(stream), $"{c.Description} (replay {replay})");
        }
    }

    [Fact]
    public void DecodeStep_AppendPlanAndDecode_InOneGraph_MatchesTheReference()
    {
        // Four requests with prefixes of 10, 31, 0 and 47 tokens on random pages of 16; each step
        // appends one token per request, updates the plan and decodes, all in one captured graph
        // that is replayed with the next step's slots and lengths in the same device buffers.
        var decoder = gpu.RequireDecoder();
        var context = decoder.Context;
        using var writer = new CudaKvCacheWriter(context);
        using var stream = CudaStream.Create(context, nonBlocking: true);
        const int batch = 4, heads = 16, page = 16, maxBlocks = 4, numBlocks = batch * maxBlocks, width = 576;
        int[] lengths = [10, 31, 0, 47];
        var seed = TestSeeds.Next();
        var rng = new Gaussian(seed);
        var pages = Enumerable.Range(0, numBlocks).ToArray();
        rng.Shuffle(pages.AsSpan());
        var blockTable = new HostTensor<int>(pages, TensorLayout.Contiguous(batch, maxBlocks));
        int SlotOf(int request, int position) => (pages[(request * maxBlocks) + (position / page)] * page) + (position % page);

        // The prefixes, written by the CPU writer into a NaN-poisoned cache.
        var kCache = TestTensors.AllocatePoisoned<T>(false, numBlocks, page, 1, width);
        var prefixSlots = Enumerable.Range(0, batch).SelectMany(r => Enumerable.Range(0, lengths[r]).Select(p => SlotOf(r, p))).ToArray();
        var prefix = HostTensor<T>.Create(prefixSlots.Length, width);
        RandomInputs.Fill<T>(prefix.Span, rng);
        _cpu.Append(prefix, KvAppendCase<T>.SlotTensor(prefixSlots, false), kCache);

        using var dCache = DeviceBuffer<T>.FromHost(context, kCache.Span);
        using var dTable = DeviceBuffer<int>.FromHost(context, pages);
        using var dSeqlens = DeviceBuffer<int>.Allocate(context, batch);
        using var dSlots = DeviceBuffer<int>.Allocate(context, batch);
        using var dLatent = DeviceBuffer<T>.Allocate(context, batch * width);
        using var dQ = DeviceBuffer<T>.Allocate(context, batch * heads * width);
        using var dOut = DeviceBuffer<T>.Allocate(context, batch * heads * 512);
        using var dLse = DeviceBuffer<float>.Allocate(context, batch * heads);
        using var plan = decoder.CreatePlan(batch, 1, heads, 1);
        var cacheTensor = dCache.AsTensor(numBlocks, page, 1, width);
        var seqlensTensor = dSeqlens.AsTensor(batch);
        var qTensor = dQ.AsTensor(batch, 1, heads, width);
        stream.Synchronize();
        using var graph = CudaGraph.Capture(stream, () =>
        {
            writer.Append(dLatent.AsTensor(batch, width), dSlots.AsTensor(batch), cacheTensor, stream);
            decoder.UpdatePlan(plan, seqlensTensor, maxBlocks, page, stream);
            decoder.Decode(qTensor, cacheTensor, dTable.AsTensor(batch, maxBlocks), seqlensTensor, plan, dOut.AsTensor(batch, 1, heads, 512), dLse.AsTensor(batch, heads, 1), stream);
        });
        using var exec = graph.Instantiate();

        for (var step = 0; step < 3; step++)
        {
            var slots = Enumerable.Range(0, batch).Select(r => SlotOf(r, lengths[r])).ToArray();
            for (var r = 0; r < batch; r++)
            {
                lengths[r]++;
            }

            var latent = HostTensor<T>.Create(batch, width);
            RandomInputs.Fill<T>(latent.Span, rng);
            var q = HostTensor<T>.Create(batch, 1, heads, width);
            RandomInputs.Fill<T>(q.Span, rng);
            dSlots.CopyFromAsync(slots, stream);
            dSeqlens.CopyFromAsync(lengths, stream);
            dLatent.CopyFromAsync(latent.Span, stream);
            dQ.CopyFromAsync(q.Span, stream);
            DeviceFill.PoisonWithNaN(dOut, stream);
            DeviceFill.PoisonWithNaN(dLse, stream);
            exec.Launch(stream);
            writer.Synchronize(stream);
            decoder.Synchronize(stream, plan);

            _cpu.Append(latent, KvAppendCase<T>.SlotTensor(slots, false), kCache);
            var cache = new T[kCache.Span.Length];
            dCache.CopyTo(cache, stream);
            KvAppendCase<T>.AssertBitwiseEqual(kCache.Span, cache, $"cache after step {step} (seed {seed})");

            var output = new T[batch * heads * 512];
            dOut.CopyTo(output, stream);
            var lse = new float[batch * heads];
            dLse.CopyTo(lse, stream);
            var seqlens = new HostTensor<int>(lengths.ToArray(), TensorLayout.Contiguous(batch));
            var reference = NaiveMlaReference.Compute(q, kCache, blockTable, seqlens, new MlaDecodeOptions());
            Compare.AssertDecode(
                reference,
                new HostTensor<T>(output, TensorLayout.Contiguous(batch, 1, heads, 512)),
                new HostTensor<float>(lse, TensorLayout.Contiguous(batch, heads, 1)),
                Tolerance.ForOutput(ElementTypes.Of<T>(nameof(T)), roundsProbabilities: true),
                $"decode step {step}, lengths [{string.Join(", ", lengths)}], seed {seed}");
        }
    }

    [Fact]
    public void DeviceLayouts_AreCheckedBeforeAnythingIsEnqueued()
    {
        var (writer, stream) = Setup();
        using var _ = writer;
        var c = KvAppendCase<T>.Create(4, 2, 4, 1, 576, false, 0, TestSeeds.Next());
        using var device = DeviceCase.Upload(c, stream);
        void Expect(string param, Action call) => Assert.Equal(param, Assert.ThrowsAny<ArgumentException>(call).ParamName);

        var misaligned = new DeviceTensor<T>(device.Latent.Pointer + 2, device.Latent.Layout);
        Expect("latent", () => writer.Append(misaligned, device.SlotMapping, device.KCache, stream));
        var oddStride = new DeviceTensor<T>(device.Latent.Pointer, new TensorLayout([2, 576], [580, 1]));
        Expect("latent", () => writer.Append(oddStride, new DeviceTensor<int>(device.SlotMapping.Pointer, TensorLayout.Contiguous(2)), device.KCache, stream));
        var misalignedRope = new DeviceTensor<T>(device.Rope.Pointer + 4, device.Rope.Layout);
        Expect("rope", () => writer.Append(device.CompressedKv, misalignedRope, device.SlotMapping, device.KCache, stream));
        var misalignedCache = new DeviceTensor<T>(device.KCache.Pointer + 8, device.KCache.Layout);
        Expect("kCache", () => writer.Append(device.Latent, device.SlotMapping, misalignedCache, stream));
        var misalignedSlots = new DeviceTensor<int>(device.SlotMapping.Pointer + 2, device.SlotMapping.Layout);
        Expect("slotMapping", () => writer.Append(device.Latent, misalignedSlots, device.KCache, stream));
        Expect("latent", () => writer.Append(device.Rope, device.SlotMapping, device.KCache, stream));
        writer.Synchronize(stream);
        KvAppendCase<T>.AssertBitwiseEqual(c.KCache.Span, device.ReadCache(stream), "cache after rejected calls");
    }

    private (CudaKvCacheWriter Writer, CudaStream Stream) Setup()
    {
        var context = gpu.RequireDecoder().Context;
        return (new CudaKvCacheWriter(context), gpu.RequireStream());
    }

    /// <summary>A case's tensors on the device, with the same layouts (padding included).</summary>
    private sealed class DeviceCase : IDisposable
    {
        private readonly List<IDisposable> _buffers = [];
        private DeviceBuffer<T> _cache = null!;

        public DeviceTensor<T> KCache { get; private set; } = null!;

        public DeviceTensor<T> Latent { get; private set; } = null!;

        public DeviceTensor<T> CompressedKv { get; private set; } = null!;

        public DeviceTensor<T> Rope { get; private set; } = null!;

        public DeviceTensor<int> SlotMapping { get; private set; } = null!;

        public DeviceBuffer<int> SlotBuffer { get; private set; } = null!;

        private int _cacheLength;

        public static DeviceCase Upload(KvAppendCase<T> c, CudaStream stream)
        {
            var d = new DeviceCase();
            var context = stream.Context;
            DeviceTensor<TE> Put<TE>(HostTensor<TE> host, out DeviceBuffer<TE> buffer)
                where TE : unmanaged
            {
                buffer = DeviceBuffer<TE>.Allocate(context, Math.Max(1, host.Layout.RequiredLength));
                d._buffers.Add(buffer);
                buffer.CopyFrom(host.Span[..(int)host.Layout.RequiredLength]);
                return new DeviceTensor<TE>(buffer.Pointer, host.Layout);
            }

            d.KCache = Put(c.KCache, out d._cache);
            d._cacheLength = (int)c.KCache.Layout.RequiredLength;
            d.Latent = Put(c.Latent, out _);
            d.CompressedKv = Put(c.CompressedKv, out _);
            d.Rope = Put(c.Rope, out _);
            d.SlotMapping = Put(c.SlotMapping, out var slots);
            d.SlotBuffer = slots;
            return d;
        }

        public T[] ReadCache(CudaStream stream)
        {
            var host = new T[_cacheLength];
            _cache.CopyTo(host, stream);
            return host;
        }

        public void Dispose()
        {
            foreach (var b in _buffers)
            {
                b.Dispose();
            }
        }
    }
}

[Collection(GpuCollection.Name)]
public sealed class GpuKvCacheWriterTests_BFloat16(GpuFixture gpu) : GpuKvCacheWriterTests<BFloat16>(gpu);

[Collection(GpuCollection.Name)]
public sealed class GpuKvCacheWriterTests_Half(GpuFixture gpu) : GpuKvCacheWriterTests<Half>(gpu);
