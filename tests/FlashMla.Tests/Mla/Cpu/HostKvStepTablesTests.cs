using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cpu;

/// <summary>
/// Decode steps through the allocator's host tables: prompts, forks that share full and partial
/// pages, appends that copy on write, a freed request and padding rows. Every layer's cache is
/// written only through the step's page copies and slot mapping (untouched slots are NaN), and
/// every decode must match the float64 reference over an independent contiguous layout of the same
/// tokens.
/// </summary>
public sealed class HostKvStepTablesTests
{
    private const int NumPages = 24;
    private const int PageSize = 4;
    private const int MaxBlocks = 8;
    private const int Rows = 4;
    private const int TokensPerRequest = 16;
    private const int QueryHeads = 16;

    [Fact]
    public void DecodeSteps_WithForksAndCopyOnWrite_MatchTheReference()
    {
        var seed = TestSeeds.Next();
        var model = new PagedCacheModel<BFloat16>(layers: 2, seed);
        var allocator = new PagedKvCacheAllocator(NumPages, PageSize, MaxBlocks);
        var tables = new HostKvStepTables(Rows, MaxBlocks, TokensPerRequest);
        HostTensor<BFloat16>[] caches = [.. Enumerable.Range(0, model.Layers).Select(_ => Poisoned())];
        var decoder = new CpuMlaDecoder();
        var plan = decoder.CreatePlan(Rows, 1, QueryHeads, 1);
        var copies = 0;

        var a = allocator.AddRequest(13);
        model.Add(a, 13);
        var b = allocator.AddRequest(6);
        model.Add(b, 6);
        copies += Step(allocator, tables, model, caches, [a, b]);
        Check(decoder, plan, tables, model, caches, [a, b, null, null], $"prompts, seed {seed}");

        var c = allocator.Fork(a, 10); // shares pages 0, 1 and the partial page 2
        model.Fork(a, c, 10);
        var d = allocator.Fork(b); // shares b's full page and its partial one
        model.Fork(b, d, 6);
        KvRequestId[] batch = [a, b, c, d];
        for (var step = 0; step < 3; step++)
        {
            foreach (var r in batch)
            {
                allocator.Append(r, 1);
                model.Append(r, 1);
            }

            copies += Step(allocator, tables, model, caches, batch);
            Check(decoder, plan, tables, model, caches, [.. batch.Cast<KvRequestId?>()], $"decode step {step}, seed {seed}");
        }

        Assert.True(copies >= 2, $"the forks' partial pages were copied {copies} times");

        allocator.Free(b);
        model.Free(b);
        batch = [d, a, c];
        foreach (var r in batch)
        {
            allocator.Append(r, 2);
            model.Append(r, 2);
        }

        Step(allocator, tables, model, caches, batch);
        Check(decoder, plan, tables, model, caches, [d, a, c, null], $"after a free, seed {seed}");
    }

    [Fact]
    public void Tables_StartAsPadding_AndCopyPagesChecksTheCache()
    {
        var tables = new HostKvStepTables(2, 3, 2);
        Assert.All(tables.BlockTable.Span.ToArray(), id => Assert.Equal(BlockTables.UnusedBlockId, id));
        Assert.All(tables.SlotMapping.Span.ToArray(), s => Assert.Equal(-1, s));
        Assert.Equal([2, 3], tables.BlockTable.Layout.Shape.ToArray());
        Assert.Equal([4L], tables.SlotMapping.Layout.Shape.ToArray());
        Assert.Throws<InvalidOperationException>(() => tables.CopyPages(HostTensor<Half>.Create(8, 4, 1, 576)));

        var allocator = new PagedKvCacheAllocator(8, 4, 3);
        var wrongWidth = Assert.Throws<ArgumentException>(() => tables.Fill(new PagedKvCacheAllocator(8, 4, 4), []));
        Assert.Equal("allocator", wrongWidth.ParamName);
        tables.Fill(allocator, []);

        var wrongPage = Assert.Throws<ArgumentException>(() => tables.CopyPages(HostTensor<Half>.Create(8, 2, 1, 576)));
        Assert.Equal("kCache", wrongPage.ParamName);
        Assert.Contains("[num_blocks ≥ 8, 4, h_kv, d]", wrongPage.Message, StringComparison.Ordinal);
        Assert.Equal("kCache", Assert.Throws<ArgumentException>(() => tables.CopyPages(HostTensor<Half>.Create(7, 4, 1, 576))).ParamName);
        var overlapping = new HostTensor<Half>(new Half[(7 * 576) + (4 * 576)], new TensorLayout([8, 4, 1, 576], [576, 576, 576, 1]));
        Assert.Contains("pages overlap", Assert.Throws<ArgumentException>(() => tables.CopyPages(overlapping)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CopyPages_CopiesOnlyTheFilledSlots_OfStridedCaches()
    {
        var allocator = new PagedKvCacheAllocator(4, 4, 2);
        var a = allocator.AddRequest(3);
        var tables = new HostKvStepTables(1, 2, 4);
        tables.Fill(allocator, [a]);
        var b = allocator.Fork(a);
        allocator.Append(b, 1);
        tables.Fill(allocator, [b]);
        Assert.Equal([new PageCopy(0, 1, 3)], tables.PageCopies);

        // [4 pages, 4 slots, 2 heads, 3 columns] with padding after every row, slot and page.
        var layout = new TensorLayout([4, 4, 2, 3], [64, 12, 5, 1]);
        var cache = new HostTensor<float>(Enumerable.Range(0, (int)layout.RequiredLength).Select(i => (float)i).ToArray(), layout);
        var before = cache.Span.ToArray();
        tables.CopyPages(cache);
        for (var i = 0; i < before.Length; i++)
        {
            var inPage1 = i >= 64 && i < 128;
            var (slot, rest) = Math.DivRem(i - 64, 12);
            var (head, column) = Math.DivRem(rest, 5);
            var copied = inPage1 && slot < 3 && head < 2 && column < 3;
            Assert.Equal(copied ? before[i - 64] : before[i], cache.Span[i]);
        }
    }

    private static HostTensor<BFloat16> Poisoned()
    {
        var cache = HostTensor<BFloat16>.Create(NumPages, PageSize, 1, PagedCacheModel<BFloat16>.TokenWidth);
        cache.Span.Fill(TestTensors.Poison<BFloat16>());
        return cache;
    }

    /// <summary>Fills the step, runs its copies on every layer and writes the new tokens; returns the copies.</summary>
    private static int Step(PagedKvCacheAllocator allocator, HostKvStepTables tables, PagedCacheModel<BFloat16> model, HostTensor<BFloat16>[] caches, KvRequestId[] batch)
    {
        int[] pending = [.. batch.Select(allocator.GetPendingTokens)];
        tables.Fill(allocator, batch);
        for (var layer = 0; layer < caches.Length; layer++)
        {
            tables.CopyPages(caches[layer]);
            var latents = model.StepLatents(batch, pending, Rows, TokensPerRequest, layer);
            PagedCacheModel<BFloat16>.WriteSlots(latents, tables.SlotMapping.Span, caches[layer]);
        }

        return tables.PageCopies.Count;
    }

    private static void Check(CpuMlaDecoder decoder, CpuDecodePlan plan, HostKvStepTables tables, PagedCacheModel<BFloat16> model, HostTensor<BFloat16>[] caches, KvRequestId?[] rows, string context)
    {
        decoder.UpdatePlan(plan, tables.CacheSeqlens, MaxBlocks, PageSize);
        for (var layer = 0; layer < caches.Length; layer++)
        {
            var q = model.Queries(Rows, 1, QueryHeads);
            var output = HostTensor<BFloat16>.Create(Rows, 1, QueryHeads, 512);
            var lse = HostTensor<float>.Create(Rows, QueryHeads, 1);
            decoder.Decode(q, caches[layer], tables.BlockTable, tables.CacheSeqlens, plan, output, lse);
            var (kRef, tableRef, seqlensRef) = model.Contiguous(rows, PageSize, layer);
            Assert.Equal(seqlensRef.Span.ToArray(), tables.CacheSeqlens.Span.ToArray());
            var reference = NaiveMlaReference.Compute(q, kRef, tableRef, seqlensRef, new MlaDecodeOptions());
            Compare.AssertDecode(reference, output, lse, Tolerance.ForOutput(ElementType.BFloat16, roundsProbabilities: false), $"{context}, layer {layer}");
        }
    }
}
