using FlashMla.Cuda;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cuda;

/// <summary>
/// Decode steps on the GPU through the allocator's device tables: the first step runs directly,
/// the later ones replay one captured graph (the tables' upload from page-locked memory, the plan
/// update and every layer's decode) whose inputs are refilled in place between replays; page
/// copies run on the device before each replay. Each layer's output must match the float64
/// reference over an independent contiguous layout of the same tokens. Skipped without a GPU.
/// </summary>
[Collection(GpuCollection.Name)]
public sealed class GpuKvStepTablesTests(GpuFixture gpu)
{
    private const int NumPages = 24;
    private const int PageSize = 64;
    private const int MaxBlocks = 4;
    private const int Rows = 4;
    private const int TokensPerRequest = 160;
    private const int QueryHeads = 16;
    private const int Layers = 2;
    private const int Width = PagedCacheModel<BFloat16>.TokenWidth;

    [Fact]
    public void DecodeSteps_ReplayedAsOneGraph_MatchTheReference()
    {
        var decoder = gpu.RequireDecoder();
        var context = decoder.Context;
        var seed = TestSeeds.Next();
        using var stream = CudaStream.Create(context, nonBlocking: true);
        var model = new PagedCacheModel<BFloat16>(Layers, seed);
        var allocator = new PagedKvCacheAllocator(NumPages, PageSize, MaxBlocks);
        using var tables = new DeviceKvStepTables(context, Rows, MaxBlocks, TokensPerRequest);
        using var plan = decoder.CreatePlan(Rows, 1, QueryHeads, 1);
        var buffers = new List<IDisposable>();
        try
        {
            DeviceBuffer<BFloat16> Allocate(long length)
            {
                var buffer = DeviceBuffer<BFloat16>.Allocate(context, length);
                buffers.Add(buffer);
                return buffer;
            }

            var poison = Enumerable.Repeat(TestTensors.Poison<BFloat16>(), NumPages * PageSize * Width).ToArray();
            var caches = Enumerable.Range(0, Layers).Select(_ => Allocate(poison.Length)).ToArray();
            foreach (var cache in caches)
            {
                cache.CopyFromAsync(poison, stream);
            }

            var cacheTensors = caches.Select(c => c.AsTensor(NumPages, PageSize, 1, Width)).ToArray();
            var qs = Enumerable.Range(0, Layers).Select(_ => Allocate(Rows * QueryHeads * Width)).ToArray();
            var outputs = Enumerable.Range(0, Layers).Select(_ => Allocate(Rows * QueryHeads * 512)).ToArray();
            var lses = Enumerable.Range(0, Layers).Select(_ => DeviceBuffer<float>.Allocate(context, Rows * QueryHeads)).ToArray();
            buffers.AddRange(lses);

            void Decode()
            {
                decoder.UpdatePlan(plan, tables.CacheSeqlens, MaxBlocks, PageSize, stream);
                for (var layer = 0; layer < Layers; layer++)
                {
                    decoder.Decode(
                        qs[layer].AsTensor(Rows, 1, QueryHeads, Width),
                        cacheTensors[layer],
                        tables.BlockTable,
                        tables.CacheSeqlens,
                        plan,
                        outputs[layer].AsTensor(Rows, 1, QueryHeads, 512),
                        lses[layer].AsTensor(Rows, QueryHeads, 1),
                        stream);
                }
            }

            HostTensor<BFloat16>[] Prepare(KvRequestId[] batch)
            {
                int[] pending = [.. batch.Select(allocator.GetPendingTokens)];
                tables.Fill(allocator, batch);
                var queries = new HostTensor<BFloat16>[Layers];
                for (var layer = 0; layer < Layers; layer++)
                {
                    tables.EnqueuePageCopies(cacheTensors[layer], stream);
                    var latents = model.StepLatents(batch, pending, Rows, TokensPerRequest, layer);
                    var slots = tables.HostSlotMapping.Span;
                    for (var r = 0; r < slots.Length; r++)
                    {
                        if (slots[r] >= 0)
                        {
                            caches[layer].CopyFromAsync(latents.Span.Slice(r * Width, Width), stream, (long)slots[r] * Width);
                        }
                    }

                    queries[layer] = model.Queries(Rows, 1, QueryHeads);
                    qs[layer].CopyFromAsync(queries[layer].Span, stream);
                    outputs[layer].MemsetAsync(0xff, stream);
                }

                return queries;
            }

            void Check(HostTensor<BFloat16>[] queries, KvRequestId?[] rows, string what)
            {
                decoder.Synchronize(stream, plan);
                for (var layer = 0; layer < Layers; layer++)
                {
                    var output = HostTensor<BFloat16>.Create(Rows, 1, QueryHeads, 512);
                    var lse = HostTensor<float>.Create(Rows, QueryHeads, 1);
                    outputs[layer].CopyTo(output.Span, stream);
                    lses[layer].CopyTo(lse.Span, stream);
                    var (kRef, tableRef, seqlensRef) = model.Contiguous(rows, PageSize, layer);
                    var reference = NaiveMlaReference.Compute(queries[layer], kRef, tableRef, seqlensRef, new MlaDecodeOptions());
                    Compare.AssertDecode(reference, output, lse, Tolerance.ForOutput(ElementType.BFloat16, roundsProbabilities: true), $"{what}, layer {layer}, seed {seed}");
                }
            }

            var a = allocator.AddRequest(150);
            model.Add(a, 150);
            var b = allocator.AddRequest(70);
            model.Add(b, 70);
            var prompt = Prepare([a, b]);
            tables.EnqueueUpload(stream);
            Decode();
            Check(prompt, [a, b, null, null], "prompts");

            var c = allocator.Fork(a, 130); // shares a's two full pages and its partial third
            model.Fork(a, c, 130);
            var d = allocator.Fork(b);
            model.Fork(b, d, 70);
            var wasChecked = decoder.CheckedMode;
            decoder.CheckedMode = false;
            using var graph = CudaGraph.Capture(stream, () =>
            {
                tables.EnqueueUpload(stream);
                Decode();
            });
            decoder.CheckedMode = wasChecked;
            using var exec = graph.Instantiate();

            KvRequestId[] batch = [a, b, c, d];
            var copies = 0;
            for (var step = 0; step < 3; step++)
            {
                foreach (var r in batch)
                {
                    allocator.Append(r, 1);
                    model.Append(r, 1);
                }

                var queries = Prepare(batch);
                copies += tables.PageCopies.Count;
                exec.Launch(stream);
                tables.MarkInUse(stream);
                Check(queries, [.. batch.Cast<KvRequestId?>()], $"replay {step}");
            }

            Assert.True(copies >= 2, $"the forks' partial pages were copied {copies} times");
            allocator.Free(b);
            model.Free(b);
            batch = [d, c, a];
            foreach (var r in batch)
            {
                allocator.Append(r, 3);
                model.Append(r, 3);
            }

            var last = Prepare(batch);
            exec.Launch(stream);
            tables.MarkInUse(stream);
            Check(last, [d, c, a, null], "replay after a free");
        }
        finally
        {
            foreach (var buffer in buffers)
            {
                buffer.Dispose();
            }
        }
    }

    [Fact]
    public void Tables_RejectBadArguments()
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        Assert.Equal("batch", Assert.Throws<ArgumentOutOfRangeException>(() => new DeviceKvStepTables(context, 0, 4, 1)).ParamName);
        using var tables = new DeviceKvStepTables(context, 2, 4, 1);
        Assert.Equal([2L, 4L], tables.BlockTable.Layout.Shape.ToArray());
        Assert.Equal(0UL, tables.CacheSeqlens.Pointer % 256);
        Assert.Equal(0UL, tables.SlotMapping.Pointer % 256);
        Assert.All(tables.HostBlockTable.Span.ToArray(), id => Assert.Equal(BlockTables.UnusedBlockId, id));
        using var cache = DeviceBuffer<Half>.Allocate(context, 8 * 4 * 576);
        Assert.Throws<InvalidOperationException>(() => tables.EnqueuePageCopies(cache.AsTensor(8, 4, 1, 576), stream));
        Assert.Equal("allocator", Assert.Throws<ArgumentException>(() => tables.Fill(new PagedKvCacheAllocator(8, 4, 3), [])).ParamName);
        tables.Fill(new PagedKvCacheAllocator(8, 4, 4), []);
        Assert.Equal("kCache", Assert.Throws<ArgumentException>(() => tables.EnqueuePageCopies(cache.AsTensor(4, 8, 1, 576), stream)).ParamName);
        tables.EnqueueUpload(stream);
        var seqlens = new int[2];
        tables.CacheSeqlens.CopyTo(seqlens, stream);
        Assert.Equal([0, 0], seqlens);
    }
}
