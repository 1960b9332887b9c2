using FlashMla.Mla;

namespace FlashMla.Tests.Mla;

/// <summary>The page allocator's rules, case by case (the random sequences are in <see cref="PagedKvCacheAllocatorPropertyTests"/>).</summary>
public sealed class PagedKvCacheAllocatorTests
{
    [Fact]
    public void AddRequest_TakesTheTokensPages_AndFreeReturnsThem()
    {
        var allocator = new PagedKvCacheAllocator(numPages: 8, pageBlockSize: 4, maxBlocksPerSequence: 4);
        var a = allocator.AddRequest(9);
        Assert.Equal(3, allocator.GetPages(a).Length);
        Assert.Equal(5, allocator.FreePages);
        Assert.Equal(9, allocator.GetLength(a));
        Assert.Equal(9, allocator.GetPendingTokens(a));
        foreach (var page in allocator.GetPages(a))
        {
            Assert.Equal(1, allocator.GetReferenceCount(page));
        }

        var empty = allocator.AddRequest();
        Assert.Equal(0, allocator.GetPages(empty).Length);
        Assert.Equal(2, allocator.RequestCount);

        var pages = allocator.GetPages(a).ToArray();
        allocator.Free(a);
        Assert.Equal(8, allocator.FreePages);
        Assert.False(allocator.Contains(a));
        Assert.All(pages, p => Assert.Equal(0, allocator.GetReferenceCount(p)));
        Assert.Equal(1, allocator.RequestCount);
    }

    [Fact]
    public void Append_TakesAPageOnlyWhenTheLastOneIsFull()
    {
        var allocator = new PagedKvCacheAllocator(8, 4, 4);
        var a = allocator.AddRequest(3);
        Assert.Equal(0, allocator.PagesToAppend(a, 1));
        allocator.Append(a, 1);
        Assert.Single(allocator.GetPages(a).ToArray());
        Assert.Equal(1, allocator.PagesToAppend(a, 1));
        Assert.Equal(2, allocator.PagesToAppend(a, 5));
        allocator.Append(a, 5);
        Assert.Equal(3, allocator.GetPages(a).Length);
        Assert.Equal(9, allocator.GetLength(a));
        Assert.Equal(9, allocator.GetPendingTokens(a));
        Assert.Empty(allocator.PendingPageCopies);
    }

    [Fact]
    public void Fork_SharesPages_AndAPartialSharedPageIsCopiedOnWrite()
    {
        var allocator = new PagedKvCacheAllocator(8, 4, 4);
        var a = allocator.AddRequest(6);
        Fill(allocator, [a], 6); // the prompt's slots are handed out: its tokens are in the cache
        var b = allocator.Fork(a);
        Assert.Equal(6, allocator.GetLength(b));
        Assert.Equal(0, allocator.GetPendingTokens(b));
        Assert.Equal(allocator.GetPages(a).ToArray(), allocator.GetPages(b).ToArray());
        Assert.All(allocator.GetPages(a).ToArray(), p => Assert.Equal(2, allocator.GetReferenceCount(p)));
        Assert.Equal(6, allocator.FreePages);

        // b writes into the shared partial page 1: it gets a copy of its two filled slots.
        Assert.Equal(1, allocator.PagesToAppend(b, 1));
        allocator.Append(b, 1);
        var pagesA = allocator.GetPages(a).ToArray();
        var pagesB = allocator.GetPages(b).ToArray();
        Assert.Equal(pagesA[0], pagesB[0]);
        Assert.NotEqual(pagesA[1], pagesB[1]);
        Assert.Equal(2, allocator.GetReferenceCount(pagesA[0]));
        Assert.Equal(1, allocator.GetReferenceCount(pagesA[1]));
        Assert.Equal(1, allocator.GetReferenceCount(pagesB[1]));
        Assert.Equal(new[] { new PageCopy(pagesA[1], pagesB[1], 2) }, allocator.PendingPageCopies);

        // a now holds page 1 alone, so it writes in place.
        Assert.Equal(0, allocator.PagesToAppend(a, 1));
        allocator.Append(a, 1);
        Assert.Equal(pagesA, allocator.GetPages(a).ToArray());
        Assert.Single(allocator.PendingPageCopies);
    }

    [Fact]
    public void Fork_OfAPrefixThatEndsOnAPageBoundary_NeedsNoCopy()
    {
        var allocator = new PagedKvCacheAllocator(8, 4, 4);
        var a = allocator.AddRequest(10);
        Fill(allocator, [a], 10);
        var b = allocator.Fork(a, 8);
        Assert.Equal(allocator.GetPages(a)[..2].ToArray(), allocator.GetPages(b).ToArray());
        Assert.Equal(1, allocator.PagesToAppend(b, 1));
        allocator.Append(b, 1);
        Assert.Empty(allocator.PendingPageCopies);
        Assert.Equal(1, allocator.GetReferenceCount(allocator.GetPages(a)[2]));
    }

    [Fact]
    public void Fork_RejectsTokensNotYetInTheCache()
    {
        var allocator = new PagedKvCacheAllocator(8, 4, 4);
        var a = allocator.AddRequest(5);
        var exception = Assert.Throws<ArgumentOutOfRangeException>(() => allocator.Fork(a, 1));
        Assert.Equal("prefixTokens", exception.ParamName);
        Assert.Contains("0 … 0 tokens", exception.Message, StringComparison.Ordinal);
        Fill(allocator, [a], 5);
        allocator.Append(a, 2);
        Assert.Equal(5, allocator.GetLength(allocator.Fork(a)));
        Assert.Throws<ArgumentOutOfRangeException>(() => allocator.Fork(a, 6));
    }

    [Fact]
    public void FillStep_WritesTablesSlotsAndPadding_AndHandsOutEachSlotOnce()
    {
        var allocator = new PagedKvCacheAllocator(16, 4, 3);
        var a = allocator.AddRequest(5); // pages 0, 1
        var b = allocator.AddRequest(2); // page 2
        var table = new int[3 * 3];
        var seqlens = new int[3];
        var slots = new int[3 * 5];
        var copies = new List<PageCopy> { new(1, 2, 3) };
        allocator.FillStep([b, a], 5, table, seqlens, slots, copies);
        Assert.Equal([2, BlockTables.UnusedBlockId, BlockTables.UnusedBlockId, 0, 1, BlockTables.UnusedBlockId, BlockTables.UnusedBlockId, BlockTables.UnusedBlockId, BlockTables.UnusedBlockId], table);
        Assert.Equal([2, 5, 0], seqlens);
        Assert.Equal([8, 9, -1, -1, -1, 0, 1, 2, 3, 4, -1, -1, -1, -1, -1], slots);
        Assert.Empty(copies);

        allocator.Append(a, 1);
        allocator.FillStep([a], 1, table.AsSpan(0, 3), seqlens.AsSpan(0, 1), slots.AsSpan(0, 1), copies);
        Assert.Equal(6, seqlens[0]);
        Assert.Equal(5, slots[0]); // token 5: page 1, offset 1
        Assert.Equal(0, allocator.GetPendingTokens(a));
    }

    [Fact]
    public void FillStep_RejectsBadBatchesWithoutWriting()
    {
        var allocator = new PagedKvCacheAllocator(16, 4, 3);
        var a = allocator.AddRequest(5);
        var b = allocator.AddRequest(1);
        var table = new int[2 * 3];
        var seqlens = new int[2];
        var slots = new int[2 * 5];
        var copies = new List<PageCopy>();

        var twice = Assert.Throws<ArgumentException>(() => allocator.FillStep([a, a], 5, table, seqlens, slots, copies));
        Assert.Equal("batch", twice.ParamName);
        Assert.Contains("appears twice", twice.Message, StringComparison.Ordinal);

        var tooMany = Assert.Throws<ArgumentOutOfRangeException>(() => allocator.FillStep([b, a], 4, table, seqlens, slots.AsSpan(0, 8), copies));
        Assert.Equal("tokensPerRequest", tooMany.ParamName);
        Assert.Contains("5 pending tokens", tooMany.Message, StringComparison.Ordinal);

        var longBatch = Assert.Throws<ArgumentException>(() => allocator.FillStep([a, b], 5, table.AsSpan(0, 3), seqlens.AsSpan(0, 1), slots.AsSpan(0, 5), copies));
        Assert.Equal("batch", longBatch.ParamName);

        var badTable = Assert.Throws<ArgumentException>(() => allocator.FillStep([a], 5, table.AsSpan(0, 5), seqlens, slots, copies));
        Assert.Equal("blockTable", badTable.ParamName);
        Assert.Contains("[2, 3] = 6", badTable.Message, StringComparison.Ordinal);

        var badSlots = Assert.Throws<ArgumentException>(() => allocator.FillStep([a], 5, table, seqlens, slots.AsSpan(0, 9), copies));
        Assert.Equal("slotMapping", badSlots.ParamName);

        allocator.Free(b);
        var freed = Assert.Throws<ArgumentException>(() => allocator.FillStep([a, b], 5, table, seqlens, slots, copies));
        Assert.Equal("batch", freed.ParamName);
        Assert.Contains("not a live request", freed.Message, StringComparison.Ordinal);

        Assert.All(table, v => Assert.Equal(0, v));
        Assert.All(slots, v => Assert.Equal(0, v));
        Assert.Equal(5, allocator.GetPendingTokens(a));
    }

    [Fact]
    public void OutOfPages_RaisesTheNumbers_AndChangesNothing()
    {
        var allocator = new PagedKvCacheAllocator(4, 4, 8);
        var a = allocator.AddRequest(6);
        Fill(allocator, [a], 6);
        var b = allocator.Fork(a);
        allocator.Append(a, 5); // a copy of page 1 and one more page: 4 pages held
        Assert.Equal(0, allocator.FreePages);
        var before = Describe(allocator, [a, b]);

        var append = Assert.Throws<KvCacheOutOfPagesException>(() => allocator.Append(b, 3));
        Assert.Equal(1, append.PagesNeeded);
        Assert.Equal(0, append.FreePages);
        Assert.Equal(4, append.TotalPages);
        Assert.IsAssignableFrom<InvalidOperationException>(append);
        Assert.Contains("needs 1 page(s), but only 0 of 4 are free", append.Message, StringComparison.Ordinal);
        Assert.Equal(before, Describe(allocator, [a, b]));

        var add = Assert.Throws<KvCacheOutOfPagesException>(() => allocator.AddRequest(1));
        Assert.Equal(1, add.PagesNeeded);
        Assert.Equal(2, allocator.RequestCount);
        Assert.Equal(before, Describe(allocator, [a, b]));
    }

    [Fact]
    public void BadArguments_NameTheParameter()
    {
        Assert.Equal("numPages", Assert.Throws<ArgumentOutOfRangeException>(() => new PagedKvCacheAllocator(0, 4, 4)).ParamName);
        Assert.Equal("pageBlockSize", Assert.Throws<ArgumentOutOfRangeException>(() => new PagedKvCacheAllocator(4, 0, 4)).ParamName);
        Assert.Equal("maxBlocksPerSequence", Assert.Throws<ArgumentOutOfRangeException>(() => new PagedKvCacheAllocator(4, 4, 0)).ParamName);
        Assert.Equal("numPages", Assert.Throws<ArgumentOutOfRangeException>(() => new PagedKvCacheAllocator(1 << 20, 1 << 12, 4)).ParamName);
        Assert.Equal("maxBlocksPerSequence", Assert.Throws<ArgumentOutOfRangeException>(() => new PagedKvCacheAllocator(4, 1 << 12, 1 << 20)).ParamName);

        var allocator = new PagedKvCacheAllocator(8, 4, 2);
        var tooLong = Assert.Throws<ArgumentOutOfRangeException>(() => allocator.AddRequest(9));
        Assert.Equal("tokens", tooLong.ParamName);
        Assert.Contains("at most 8 tokens fit a request (max_blocks_per_seq 2 × page_block_size 4)", tooLong.Message, StringComparison.Ordinal);
        var a = allocator.AddRequest(7);
        Assert.Equal("tokens", Assert.Throws<ArgumentOutOfRangeException>(() => allocator.Append(a, 2)).ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentOutOfRangeException>(() => allocator.Append(a, -1)).ParamName);
        Assert.Equal("page", Assert.Throws<ArgumentOutOfRangeException>(() => allocator.GetReferenceCount(8)).ParamName);

        allocator.Free(a);
        Assert.Equal("request", Assert.Throws<ArgumentException>(() => allocator.Free(a)).ParamName);
        Assert.Equal("request", Assert.Throws<ArgumentException>(() => allocator.Append(a, 1)).ParamName);
        Assert.Equal("source", Assert.Throws<ArgumentException>(() => allocator.Fork(a)).ParamName);

        // The slot is reused with a new generation: the old id stays invalid.
        var b = allocator.AddRequest(1);
        Assert.Equal(a.Index, b.Index);
        Assert.NotEqual(a, b);
        Assert.False(allocator.Contains(a));
        Assert.True(allocator.Contains(b));
        Assert.Throws<ArgumentException>(() => allocator.GetLength(a));
        Assert.Throws<ArgumentException>(() => new PagedKvCacheAllocator(8, 4, 2).GetLength(b));
        var fresh = new PagedKvCacheAllocator(8, 4, 2);
        Assert.Equal(0, fresh.AddRequest().Index);
        Assert.False(fresh.Contains(default));
    }

    private static void Fill(PagedKvCacheAllocator allocator, KvRequestId[] batch, int tokensPerRequest) =>
        allocator.FillStep(batch, tokensPerRequest, new int[batch.Length * allocator.MaxBlocksPerSequence], new int[batch.Length], new int[batch.Length * tokensPerRequest], []);

    private static string Describe(PagedKvCacheAllocator allocator, KvRequestId[] requests) =>
        string.Join(
            "; ",
            [
                $"free {allocator.FreePages}",
                $"refs [{string.Join(",", Enumerable.Range(0, allocator.NumPages).Select(allocator.GetReferenceCount))}]",
                $"copies [{string.Join(",", allocator.PendingPageCopies)}]",
                .. requests.Select(r => $"{r}: {allocator.GetLength(r)}/{allocator.GetPendingTokens(r)} [{string.Join(",", allocator.GetPages(r).ToArray())}]"),
            ]);
}
