using FlashMla.Tensors;

namespace FlashMla.Mla;

/// <summary>
/// Block-table conventions and conversions from and to FlashInfer's page-table form.
/// </summary>
/// <remarks>
/// <para>
/// A block table is int32 [b, max_blocks_per_seq]: row i lists request i's pages in token order,
/// and with cache_seqlens [b] only its first ceil(cache_seqlens[i] / page_block_size) entries are
/// read. The other entries are unused; this library writes <see cref="UnusedBlockId"/> there.
/// </para>
/// <para>
/// FlashInfer's form is CSR-like: kv_indptr int32 [b + 1] (non-decreasing), kv_indices int32
/// holding request i's pages at kv_indptr[i] … kv_indptr[i+1] − 1, and kv_last_page_len int32 [b],
/// the tokens in request i's last page (1 … page_block_size). A request's length is
/// (pages − 1) · page_block_size + kv_last_page_len[i]; a request without pages has length 0 and
/// kv_last_page_len 0.
/// </para>
/// <para>
/// The conversions accept tensors of any strides, check everything before writing anything, and
/// raise <see cref="ArgumentException"/> (shapes) or <see cref="ArgumentOutOfRangeException"/>
/// (values) naming the parameter, with the expected and the actual values.
/// </para>
/// </remarks>
public static class BlockTables
{
    /// <summary>
    /// The value written in unused block-table entries (FlashMLA's tests use it too): far outside
    /// any cache, so a bug that reads an unused entry shows as an out-of-range block id.
    /// </summary>
    public const int UnusedBlockId = 2147480000;

    /// <summary>The most pages a request of a FlashInfer page table holds: the block table's columns it needs.</summary>
    /// <param name="kvIndptr">int32 [b + 1], non-decreasing.</param>
    /// <returns>max over i of kv_indptr[i+1] − kv_indptr[i] (0 for an empty batch).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="kvIndptr"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="kvIndptr"/> is not a vector of at least one entry.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An entry is negative or smaller than the one before it.</exception>
    public static int FlashInferMaxPages(HostTensor<int> kvIndptr)
    {
        var batch = RequireIndptr(kvIndptr);
        var max = 0;
        for (var i = 0; i < batch; i++)
        {
            max = Math.Max(max, At(kvIndptr, i + 1) - At(kvIndptr, i));
        }

        return max;
    }

    /// <summary>Converts FlashInfer's page table to a block table and cache_seqlens.</summary>
    /// <param name="kvIndptr">int32 [b + 1]: non-decreasing, kv_indptr[0] ≥ 0, kv_indptr[b] ≤ kv_indices' length.</param>
    /// <param name="kvIndices">int32 [nnz]: page ids in [0, <paramref name="numBlocks"/>).</param>
    /// <param name="kvLastPageLen">int32 [b]: 1 … page_block_size for a request with pages, 0 for one without.</param>
    /// <param name="pageBlockSize">Tokens per page (≥ 1).</param>
    /// <param name="numBlocks">The cache's pages (≥ 1).</param>
    /// <param name="blockTable">Receives int32 [b, max_blocks_per_seq]; max_blocks_per_seq ≥ <see cref="FlashInferMaxPages"/>. Unused entries get <see cref="UnusedBlockId"/>.</param>
    /// <param name="cacheSeqlens">Receives int32 [b].</param>
    /// <exception cref="ArgumentNullException">A tensor is null.</exception>
    /// <exception cref="ArgumentException">A tensor has the wrong rank or shape, or a request has more pages than the block table has columns.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A count, an indptr entry, a page id or a last-page length is out of range.</exception>
    public static void FromFlashInfer(
        HostTensor<int> kvIndptr,
        HostTensor<int> kvIndices,
        HostTensor<int> kvLastPageLen,
        int pageBlockSize,
        int numBlocks,
        HostTensor<int> blockTable,
        HostTensor<int> cacheSeqlens)
    {
        var batch = RequireIndptr(kvIndptr);
        ArgumentNullException.ThrowIfNull(kvIndices);
        ArgumentNullException.ThrowIfNull(kvLastPageLen);
        ArgumentNullException.ThrowIfNull(blockTable);
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageBlockSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(numBlocks, 1);
        RequireVector(kvIndices, -1, nameof(kvIndices));
        RequireVector(kvLastPageLen, batch, nameof(kvLastPageLen));
        RequireVector(cacheSeqlens, batch, nameof(cacheSeqlens));
        var width = RequireTable(blockTable, batch);
        var nnz = kvIndices.Layout.Shape[0];
        var start = At(kvIndptr, 0);
        if (start < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(kvIndptr), $"kvIndptr[0] = {start} is negative.");
        }

        if (At(kvIndptr, batch) > nnz)
        {
            throw new ArgumentOutOfRangeException(
                nameof(kvIndptr),
                $"kvIndptr[{batch}] = {At(kvIndptr, batch)} exceeds kvIndices' length {nnz}.");
        }

        for (var i = 0; i < batch; i++)
        {
            var first = At(kvIndptr, i);
            var pages = At(kvIndptr, i + 1) - first;
            if (pages > width)
            {
                throw new ArgumentException(
                    $"Request {i} has {pages} pages (kvIndptr[{i + 1}] − kvIndptr[{i}]) but blockTable has {width} columns.",
                    nameof(blockTable));
            }

            var last = At(kvLastPageLen, i);
            if (pages == 0 ? last != 0 : last < 1 || last > pageBlockSize)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(kvLastPageLen),
                    pages == 0
                        ? $"kvLastPageLen[{i}] = {last}, but request {i} has no pages, so it must be 0."
                        : $"kvLastPageLen[{i}] = {last} must be in [1, {pageBlockSize}] (page_block_size) for request {i} of {pages} page(s).");
            }

            if ((long)(pages - 1) * pageBlockSize + last > int.MaxValue)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(kvIndptr),
                    $"Request {i} has {(long)(pages - 1) * pageBlockSize + last} tokens; sequence lengths are int32.");
            }

            for (var j = 0; j < pages; j++)
            {
                var id = At(kvIndices, first + j);
                if (id < 0 || id >= numBlocks)
                {
                    throw new ArgumentOutOfRangeException(
                        nameof(kvIndices),
                        $"kvIndices[{first + j}] = {id} (page {j} of request {i}) is not a valid page id: ids must be in [0, {numBlocks}) (num_blocks).");
                }
            }
        }

        for (var i = 0; i < batch; i++)
        {
            var first = At(kvIndptr, i);
            var pages = At(kvIndptr, i + 1) - first;
            for (var j = 0; j < width; j++)
            {
                Set(blockTable, i, j, j < pages ? At(kvIndices, first + j) : UnusedBlockId);
            }

            Set(cacheSeqlens, i, pages == 0 ? 0 : ((pages - 1) * pageBlockSize) + At(kvLastPageLen, i));
        }
    }

    /// <summary>The entries of kv_indices that <see cref="ToFlashInfer"/> writes: Σ ceil(cache_seqlens[i] / page_block_size).</summary>
    /// <param name="cacheSeqlens">int32 [b], each ≥ 0.</param>
    /// <param name="pageBlockSize">Tokens per page (≥ 1).</param>
    /// <returns>The page count.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="cacheSeqlens"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="cacheSeqlens"/> is not a vector.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A length is negative, or <paramref name="pageBlockSize"/> is less than 1.</exception>
    public static int FlashInferPageCount(HostTensor<int> cacheSeqlens, int pageBlockSize)
    {
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageBlockSize, 1);
        RequireVector(cacheSeqlens, -1, nameof(cacheSeqlens));
        long total = 0;
        for (var i = 0; i < cacheSeqlens.Layout.Shape[0]; i++)
        {
            var length = At(cacheSeqlens, i);
            if (length < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(cacheSeqlens), $"cacheSeqlens[{i}] = {length} is negative.");
            }

            total += PagesOf(length, pageBlockSize);
        }

        return checked((int)total);
    }

    /// <summary>Converts a block table and cache_seqlens to FlashInfer's page table (the inverse of <see cref="FromFlashInfer"/>).</summary>
    /// <param name="blockTable">int32 [b, max_blocks_per_seq]; the entries of pages in use must be in [0, <paramref name="numBlocks"/>).</param>
    /// <param name="cacheSeqlens">int32 [b], each in [0, max_blocks_per_seq · page_block_size].</param>
    /// <param name="pageBlockSize">Tokens per page (≥ 1).</param>
    /// <param name="numBlocks">The cache's pages (≥ 1).</param>
    /// <param name="kvIndptr">Receives int32 [b + 1], starting at 0.</param>
    /// <param name="kvIndices">Receives the pages in its first <see cref="FlashInferPageCount"/> entries; it may be longer (the rest is not written).</param>
    /// <param name="kvLastPageLen">Receives int32 [b].</param>
    /// <returns>The entries of <paramref name="kvIndices"/> written.</returns>
    /// <exception cref="ArgumentNullException">A tensor is null.</exception>
    /// <exception cref="ArgumentException">A tensor has the wrong rank or shape, or <paramref name="kvIndices"/> is too short.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A count, a length or a block id in use is out of range.</exception>
    public static int ToFlashInfer(
        HostTensor<int> blockTable,
        HostTensor<int> cacheSeqlens,
        int pageBlockSize,
        int numBlocks,
        HostTensor<int> kvIndptr,
        HostTensor<int> kvIndices,
        HostTensor<int> kvLastPageLen)
    {
        ArgumentNullException.ThrowIfNull(blockTable);
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentNullException.ThrowIfNull(kvIndptr);
        ArgumentNullException.ThrowIfNull(kvIndices);
        ArgumentNullException.ThrowIfNull(kvLastPageLen);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageBlockSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(numBlocks, 1);
        RequireVector(cacheSeqlens, -1, nameof(cacheSeqlens));
        var batch = (int)cacheSeqlens.Layout.Shape[0];
        var width = RequireTable(blockTable, batch);
        RequireVector(kvIndptr, batch + 1L, nameof(kvIndptr));
        RequireVector(kvIndices, -1, nameof(kvIndices));
        RequireVector(kvLastPageLen, batch, nameof(kvLastPageLen));
        var capacity = (long)width * pageBlockSize;
        long total = 0;
        for (var i = 0; i < batch; i++)
        {
            var length = At(cacheSeqlens, i);
            if (length < 0 || length > capacity)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(cacheSeqlens),
                    $"cacheSeqlens[{i}] = {length} must be in [0, {capacity}] (max_blocks_per_seq {width} × page_block_size {pageBlockSize}).");
            }

            var pages = PagesOf(length, pageBlockSize);
            for (var j = 0; j < pages; j++)
            {
                var id = Get(blockTable, i, j);
                if (id < 0 || id >= numBlocks)
                {
                    throw new ArgumentOutOfRangeException(
                        nameof(blockTable),
                        $"blockTable[{i}, {j}] = {id} is not a valid block id: ids of pages in use must be in [0, {numBlocks}) (num_blocks). Request {i} has seqlen {length}, so its first {pages} page(s) are in use.");
                }
            }

            total += pages;
        }

        if (total > kvIndices.Layout.Shape[0])
        {
            throw new ArgumentException($"kvIndices must hold at least {total} entries (the pages in use); got {kvIndices.Layout.Shape[0]}.", nameof(kvIndices));
        }

        var next = 0;
        Set(kvIndptr, 0, 0);
        for (var i = 0; i < batch; i++)
        {
            var length = At(cacheSeqlens, i);
            var pages = PagesOf(length, pageBlockSize);
            for (var j = 0; j < pages; j++)
            {
                Set(kvIndices, next++, Get(blockTable, i, j));
            }

            Set(kvIndptr, i + 1, next);
            Set(kvLastPageLen, i, pages == 0 ? 0 : length - ((pages - 1) * pageBlockSize));
        }

        return next;
    }

    private static int PagesOf(int length, int pageBlockSize) => (int)(((long)length + pageBlockSize - 1) / pageBlockSize);

    private static int RequireIndptr(HostTensor<int> kvIndptr)
    {
        ArgumentNullException.ThrowIfNull(kvIndptr);
        RequireVector(kvIndptr, -1, nameof(kvIndptr));
        if (kvIndptr.Layout.Shape[0] < 1)
        {
            throw new ArgumentException("kvIndptr must have shape [b + 1] with at least one entry; got [0].", nameof(kvIndptr));
        }

        var batch = (int)kvIndptr.Layout.Shape[0] - 1;
        for (var i = 0; i < batch; i++)
        {
            if (At(kvIndptr, i + 1) < At(kvIndptr, i))
            {
                throw new ArgumentOutOfRangeException(
                    nameof(kvIndptr),
                    $"kvIndptr must be non-decreasing; kvIndptr[{i + 1}] = {At(kvIndptr, i + 1)} < kvIndptr[{i}] = {At(kvIndptr, i)}.");
            }
        }

        return batch;
    }

    private static void RequireVector(HostTensor<int> tensor, long length, string paramName)
    {
        if (tensor.Layout.Rank != 1 || (length >= 0 && tensor.Layout.Shape[0] != length) || tensor.Layout.Shape[0] > int.MaxValue)
        {
            throw new ArgumentException(
                $"{paramName} must have shape [{(length >= 0 ? length.ToString(System.Globalization.CultureInfo.InvariantCulture) : "n")}]; got {TensorLayout.FormatDims(tensor.Layout.Shape)}.",
                paramName);
        }
    }

    private static int RequireTable(HostTensor<int> blockTable, int batch)
    {
        var layout = blockTable.Layout;
        if (layout.Rank != 2 || layout.Shape[0] != batch || layout.Shape[1] < 1 || layout.Shape[1] > int.MaxValue)
        {
            throw new ArgumentException(
                $"blockTable must have shape [{batch}, max_blocks_per_seq] with max_blocks_per_seq ≥ 1; got {TensorLayout.FormatDims(layout.Shape)}.",
                nameof(blockTable));
        }

        return (int)layout.Shape[1];
    }

    private static int At(HostTensor<int> vector, int i) => vector.Span[checked((int)(i * vector.Layout.Strides[0]))];

    private static void Set(HostTensor<int> vector, int i, int value) => vector.Span[checked((int)(i * vector.Layout.Strides[0]))] = value;

    private static int Get(HostTensor<int> table, int i, int j) =>
        table.Span[checked((int)((i * table.Layout.Strides[0]) + (j * table.Layout.Strides[1])))];

    private static void Set(HostTensor<int> table, int i, int j, int value) =>
        table.Span[checked((int)((i * table.Layout.Strides[0]) + (j * table.Layout.Strides[1])))] = value;
}
