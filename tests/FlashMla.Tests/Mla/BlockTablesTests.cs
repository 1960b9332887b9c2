using CsCheck;
using FlashMla.Mla;
using FlashMla.Tensors;

namespace FlashMla.Tests.Mla;

/// <summary>The conversions between FlashInfer's page table and block table + cache_seqlens.</summary>
public sealed class BlockTablesTests
{
    [Fact]
    public void FromFlashInfer_GivesTheBlockTableAndLengths()
    {
        // Three requests of page size 4: pages {7, 2} with 3 tokens in the last, none, {5} full.
        var indptr = Vector(0, 2, 2, 3);
        var indices = Vector(7, 2, 5, 99); // trailing entries past indptr[b] are ignored
        var last = Vector(3, 0, 4);
        var table = HostTensor<int>.Create(3, 3);
        var seqlens = HostTensor<int>.Create(3);
        Assert.Equal(2, BlockTables.FlashInferMaxPages(indptr));
        BlockTables.FromFlashInfer(indptr, indices, last, pageBlockSize: 4, numBlocks: 8, table, seqlens);
        const int U = BlockTables.UnusedBlockId;
        Assert.Equal([7, 2, U, U, U, U, 5, U, U], table.Span.ToArray());
        Assert.Equal([7, 0, 4], seqlens.Span.ToArray());

        var backIndptr = HostTensor<int>.Create(4);
        var backIndices = Vector(-5, -5, -5, -5);
        var backLast = HostTensor<int>.Create(3);
        Assert.Equal(3, BlockTables.FlashInferPageCount(seqlens, 4));
        Assert.Equal(3, BlockTables.ToFlashInfer(table, seqlens, 4, 8, backIndptr, backIndices, backLast));
        Assert.Equal([0, 2, 2, 3], backIndptr.Span.ToArray());
        Assert.Equal([7, 2, 5, -5], backIndices.Span.ToArray());
        Assert.Equal([3, 0, 4], backLast.Span.ToArray());
    }

    [Fact]
    public void FromFlashInfer_ReadsAndWritesStridedTensors()
    {
        var indptr = new HostTensor<int>(new[] { 1, -1, 2, -1, 4 }, new TensorLayout([3], [2])); // starts at 1
        var indices = new HostTensor<int>(new[] { 9, -1, 0, -1, 3, -1, 1 }, new TensorLayout([4], [2]));
        var last = new HostTensor<int>(new[] { 1, -1, 2 }, new TensorLayout([2], [2]));
        var table = new HostTensor<int>(new int[2 * 4], new TensorLayout([2, 2], [4, 1]));
        var seqlens = new HostTensor<int>(new int[3], new TensorLayout([2], [2]));
        BlockTables.FromFlashInfer(indptr, indices, last, 2, 4, table, seqlens);
        Assert.Equal([0, BlockTables.UnusedBlockId, 0, 0, 3, 1, 0, 0], table.Span.ToArray()); // the row gaps stay untouched
        Assert.Equal([1, 0, 4], seqlens.Span.ToArray());
    }

    public static TheoryData<string, string, string> BadInputs => new()
    {
        { "indptr-decreasing", "kvIndptr", "non-decreasing" },
        { "indptr-negative", "kvIndptr", "kvIndptr[0] = -1 is negative" },
        { "indptr-past-indices", "kvIndptr", "kvIndptr[2] = 4 exceeds kvIndices' length 3" },
        { "page-id", "kvIndices", "kvIndices[1] = 8 (page 1 of request 0) is not a valid page id: ids must be in [0, 8)" },
        { "last-zero", "kvLastPageLen", "kvLastPageLen[0] = 0 must be in [1, 4]" },
        { "last-too-long", "kvLastPageLen", "kvLastPageLen[0] = 5 must be in [1, 4]" },
        { "last-for-empty", "kvLastPageLen", "kvLastPageLen[1] = 2, but request 1 has no pages, so it must be 0" },
        { "too-many-pages", "blockTable", "Request 0 has 2 pages (kvIndptr[1] − kvIndptr[0]) but blockTable has 1 columns" },
        { "last-shape", "kvLastPageLen", "kvLastPageLen must have shape [2]" },
        { "seqlens-shape", "cacheSeqlens", "cacheSeqlens must have shape [2]" },
        { "table-shape", "blockTable", "blockTable must have shape [2, max_blocks_per_seq]" },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void FromFlashInfer_RejectsBadInput_NamingTheParameter_WithoutWriting(string name, string paramName, string message)
    {
        var indptr = Vector(0, 2, 2);
        var indices = Vector(1, 3, 6);
        var last = Vector(4, 0);
        var table = HostTensor<int>.Create(2, 2);
        var seqlens = HostTensor<int>.Create(2);
        switch (name)
        {
            case "indptr-decreasing": indptr = Vector(0, 2, 1); break;
            case "indptr-negative": indptr = Vector(-1, 2, 2); break;
            case "indptr-past-indices": indptr = Vector(0, 2, 4); break;
            case "page-id": indices = Vector(1, 8, 6); break;
            case "last-zero": last = Vector(0, 0); break;
            case "last-too-long": last = Vector(5, 0); break;
            case "last-for-empty": last = Vector(4, 2); break;
            case "too-many-pages": table = HostTensor<int>.Create(2, 1); break;
            case "last-shape": last = Vector(4, 0, 0); break;
            case "seqlens-shape": seqlens = HostTensor<int>.Create(3); break;
            case "table-shape": table = HostTensor<int>.Create(3, 2); break;
            default: throw new ArgumentOutOfRangeException(nameof(name), name, null);
        }

        table.Span.Fill(-7);
        seqlens.Span.Fill(-7);
        var exception = Assert.ThrowsAny<ArgumentException>(() => BlockTables.FromFlashInfer(indptr, indices, last, 4, 8, table, seqlens));
        Assert.Equal(paramName, exception.ParamName);
        Assert.Contains(message, exception.Message, StringComparison.Ordinal);
        Assert.All(table.Span.ToArray(), v => Assert.Equal(-7, v));
        Assert.All(seqlens.Span.ToArray(), v => Assert.Equal(-7, v));
    }

    [Fact]
    public void ToFlashInfer_RejectsBadInput_NamingTheParameter()
    {
        var table = new HostTensor<int>(new[] { 1, 9, 2, BlockTables.UnusedBlockId }, TensorLayout.Contiguous(2, 2));
        var seqlens = Vector(5, 3);
        var indptr = HostTensor<int>.Create(3);
        var last = HostTensor<int>.Create(2);
        var id = Assert.Throws<ArgumentOutOfRangeException>(() => BlockTables.ToFlashInfer(table, seqlens, 4, 8, indptr, HostTensor<int>.Create(3), last));
        Assert.Equal("blockTable", id.ParamName);
        Assert.Contains("blockTable[0, 1] = 9", id.Message, StringComparison.Ordinal);

        table.Span[1] = 0;
        var shortIndices = Assert.Throws<ArgumentException>(() => BlockTables.ToFlashInfer(table, seqlens, 4, 8, indptr, HostTensor<int>.Create(2), last));
        Assert.Equal("kvIndices", shortIndices.ParamName);
        Assert.Contains("at least 3 entries", shortIndices.Message, StringComparison.Ordinal);

        var tooLong = Assert.Throws<ArgumentOutOfRangeException>(() => BlockTables.ToFlashInfer(table, Vector(9, 0), 4, 8, indptr, HostTensor<int>.Create(3), last));
        Assert.Equal("cacheSeqlens", tooLong.ParamName);
        Assert.Contains("must be in [0, 8]", tooLong.Message, StringComparison.Ordinal);
        Assert.Equal("kvIndptr", Assert.Throws<ArgumentException>(() => BlockTables.ToFlashInfer(table, seqlens, 4, 8, HostTensor<int>.Create(2), HostTensor<int>.Create(3), last)).ParamName);
        Assert.All(indptr.Span.ToArray(), v => Assert.Equal(0, v));
    }

    [Fact]
    public void RoundTrip_OfRandomPageTables_IsExact()
    {
        var gen =
            from pageSize in Gen.Int[1, 8]
            from numBlocks in Gen.Int[1, 40]
            from lengths in Gen.Int[0, 5 * pageSize].Array[1, 6]
            from pageIds in Gen.Int[0, numBlocks - 1].Array[6 * 5]
            select (pageSize, numBlocks, lengths, pageIds);
        gen.Sample(c =>
        {
            var (pageSize, numBlocks, lengths, pageIds) = c;
            var batch = lengths.Length;
            var pagesOf = lengths.Select(l => (l + pageSize - 1) / pageSize).ToArray();
            var width = Math.Max(1, pagesOf.Max());
            var indptr = HostTensor<int>.Create(batch + 1);
            var indicesList = new List<int>();
            var last = HostTensor<int>.Create(batch);
            for (var i = 0; i < batch; i++)
            {
                indicesList.AddRange(pageIds.Skip(i * 5).Take(pagesOf[i]));
                indptr.Span[i + 1] = indicesList.Count;
                last.Span[i] = pagesOf[i] == 0 ? 0 : lengths[i] - ((pagesOf[i] - 1) * pageSize);
            }

            var indices = new HostTensor<int>(indicesList.ToArray(), TensorLayout.Contiguous(indicesList.Count));
            Assert.Equal(pagesOf.Max(), BlockTables.FlashInferMaxPages(indptr));
            var table = HostTensor<int>.Create(batch, width);
            var seqlens = HostTensor<int>.Create(batch);
            BlockTables.FromFlashInfer(indptr, indices, last, pageSize, numBlocks, table, seqlens);
            Assert.Equal(lengths, seqlens.Span.ToArray());

            // The decode accepts the result.
            var shape = new MlaDecodeShape(batch, 1, 16, 1, 576, 512, numBlocks, pageSize, width);
            MlaDecodeValidation.ValidateSequences(shape, seqlens, table);

            var backIndptr = HostTensor<int>.Create(batch + 1);
            var backIndices = HostTensor<int>.Create(BlockTables.FlashInferPageCount(seqlens, pageSize));
            var backLast = HostTensor<int>.Create(batch);
            BlockTables.ToFlashInfer(table, seqlens, pageSize, numBlocks, backIndptr, backIndices, backLast);
            Assert.Equal(indptr.Span.ToArray(), backIndptr.Span.ToArray());
            Assert.Equal(indicesList, backIndices.Span.ToArray());
            Assert.Equal(last.Span.ToArray(), backLast.Span.ToArray());
        }, iter: 300);
    }

    private static HostTensor<int> Vector(params int[] values) => new(values, TensorLayout.Contiguous(values.Length));
}
