using FlashMla.Tensors;

namespace FlashMla.Mla.Cpu;

/// <summary>
/// A decode step's tables in host tensors, refilled in place every step from a
/// <see cref="PagedKvCacheAllocator"/>: the block table [b, max_blocks_per_seq], cache_seqlens [b],
/// the slot mapping [b · tokens_per_request] of the step's new tokens and the step's page copies.
/// The tensors are allocated once, so a step allocates nothing.
/// </summary>
/// <remarks>
/// A step: change the allocator (append, fork, free), <see cref="Fill"/>, run
/// <see cref="CopyPages{T}(HostTensor{T})"/> on every layer's cache, write the new tokens through
/// <see cref="SlotMapping"/>, update the plan with <see cref="CacheSeqlens"/> and decode every
/// layer with <see cref="BlockTable"/> and <see cref="CacheSeqlens"/>.
/// </remarks>
public sealed class HostKvStepTables
{
    private readonly List<PageCopy> _pageCopies = new(16);
    private int _numPages;
    private int _pageBlockSize;

    /// <summary>Allocates the tables of steps of <paramref name="batch"/> rows.</summary>
    /// <param name="batch">b, the decode's batch (≥ 1).</param>
    /// <param name="maxBlocksPerSequence">The block table's columns: the allocator's <see cref="PagedKvCacheAllocator.MaxBlocksPerSequence"/> (≥ 1).</param>
    /// <param name="tokensPerRequest">Slot-mapping rows per request, s_q for a decode step (≥ 0).</param>
    /// <exception cref="ArgumentOutOfRangeException">A count is out of range.</exception>
    public HostKvStepTables(int batch, int maxBlocksPerSequence, int tokensPerRequest)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBlocksPerSequence, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(tokensPerRequest);
        Batch = batch;
        MaxBlocksPerSequence = maxBlocksPerSequence;
        TokensPerRequest = tokensPerRequest;
        BlockTable = HostTensor<int>.Create(batch, maxBlocksPerSequence);
        CacheSeqlens = HostTensor<int>.Create(batch);
        SlotMapping = HostTensor<int>.Create((long)batch * tokensPerRequest);
        BlockTable.Span.Fill(BlockTables.UnusedBlockId);
        SlotMapping.Span.Fill(-1);
    }

    /// <summary>b.</summary>
    public int Batch { get; }

    /// <summary>The block table's columns.</summary>
    public int MaxBlocksPerSequence { get; }

    /// <summary>Slot-mapping rows per request.</summary>
    public int TokensPerRequest { get; }

    /// <summary>int32 [b, max_blocks_per_seq].</summary>
    public HostTensor<int> BlockTable { get; }

    /// <summary>int32 [b].</summary>
    public HostTensor<int> CacheSeqlens { get; }

    /// <summary>int32 [b · tokens_per_request]: request i's new tokens at rows i · tokens_per_request …, −1 for padding.</summary>
    public HostTensor<int> SlotMapping { get; }

    /// <summary>The step's page copies, in order (from the last <see cref="Fill"/>).</summary>
    public IReadOnlyList<PageCopy> PageCopies => _pageCopies;

    /// <summary>Writes the step's tables for <paramref name="batch"/> (see <see cref="PagedKvCacheAllocator.FillStep"/>).</summary>
    /// <param name="allocator">The allocator; its max_blocks_per_seq must be this table's.</param>
    /// <param name="batch">Distinct live requests, at most <see cref="Batch"/>; rows past them are padding.</param>
    /// <exception cref="ArgumentNullException"><paramref name="allocator"/> is null.</exception>
    /// <exception cref="ArgumentException">The allocator has another max_blocks_per_seq, or the batch is invalid (see <see cref="PagedKvCacheAllocator.FillStep"/>); nothing was written.</exception>
    public void Fill(PagedKvCacheAllocator allocator, ReadOnlySpan<KvRequestId> batch)
    {
        ArgumentNullException.ThrowIfNull(allocator);
        if (allocator.MaxBlocksPerSequence != MaxBlocksPerSequence)
        {
            throw new ArgumentException(
                $"The allocator has max_blocks_per_seq {allocator.MaxBlocksPerSequence}; these tables have {MaxBlocksPerSequence} columns.", nameof(allocator));
        }

        allocator.FillStep(batch, TokensPerRequest, BlockTable.Span, CacheSeqlens.Span, SlotMapping.Span, _pageCopies);
        _numPages = allocator.NumPages;
        _pageBlockSize = allocator.PageBlockSize;
    }

    /// <summary>Runs the step's page copies on one layer's cache, in order. Call it for every layer before the step's token writes.</summary>
    /// <typeparam name="T">The cache's element type.</typeparam>
    /// <param name="kCache">[num_blocks ≥ the allocator's pages, page_block_size, h_kv, d]; pages must not overlap.</param>
    /// <exception cref="ArgumentNullException"><paramref name="kCache"/> is null.</exception>
    /// <exception cref="ArgumentException">The cache does not hold the allocator's pages; nothing was copied.</exception>
    /// <exception cref="InvalidOperationException">The tables were never filled.</exception>
    public void CopyPages<T>(HostTensor<T> kCache)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(kCache);
        if (_pageBlockSize == 0)
        {
            throw new InvalidOperationException("The tables were never filled; call Fill first.");
        }

        PageCopyLayout.RequireCache(kCache.Layout, _numPages, _pageBlockSize, nameof(kCache));
        Copy(_pageCopies, kCache);
    }

    /// <summary>
    /// Runs page copies (from <see cref="PagedKvCacheAllocator.FillStep"/>, or a
    /// <c>DeviceKvStepTables</c>' <c>PageCopies</c> for a host mirror of a device cache) on one
    /// layer's cache, in order.
    /// </summary>
    /// <typeparam name="T">The cache's element type.</typeparam>
    /// <param name="copies">The copies, in order.</param>
    /// <param name="pageBlockSize">The allocator's tokens per page.</param>
    /// <param name="kCache">[num_blocks, page_block_size, h_kv, d] holding every page the copies name; pages must not overlap.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">The cache does not hold the pages the copies name, or a copy is longer than a page; nothing was copied.</exception>
    public static void CopyPages<T>(IReadOnlyList<PageCopy> copies, int pageBlockSize, HostTensor<T> kCache)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(copies);
        ArgumentNullException.ThrowIfNull(kCache);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageBlockSize, 1);
        var pages = 1;
        for (var i = 0; i < copies.Count; i++)
        {
            var copy = copies[i];
            if (copy.Tokens < 0 || copy.Tokens > pageBlockSize || copy.SourcePage < 0 || copy.DestinationPage < 0)
            {
                throw new ArgumentException($"The copy {copy} does not fit pages of {pageBlockSize} tokens.", nameof(copies));
            }

            pages = Math.Max(pages, Math.Max(copy.SourcePage, copy.DestinationPage) + 1);
        }

        PageCopyLayout.RequireCache(kCache.Layout, pages, pageBlockSize, nameof(kCache));
        Copy(copies, kCache);
    }

    private static void Copy<T>(IReadOnlyList<PageCopy> copies, HostTensor<T> kCache)
        where T : unmanaged
    {
        var layout = kCache.Layout;
        var span = kCache.Span;
        var (s1, s2, s3) = (layout.Strides[1], layout.Strides[2], layout.Strides[3]);
        var (heads, dim) = (layout.Shape[2], layout.Shape[3]);
        for (var i = 0; i < copies.Count; i++)
        {
            var copy = copies[i];
            var source = PageCopyLayout.Offset(layout, copy.SourcePage);
            var destination = PageCopyLayout.Offset(layout, copy.DestinationPage);
            for (long t = 0; t < copy.Tokens; t++)
            {
                for (long h = 0; h < heads; h++)
                {
                    var row = (t * s1) + (h * s2);
                    if (s3 == 1)
                    {
                        span.Slice((int)(source + row), (int)dim).CopyTo(span.Slice((int)(destination + row), (int)dim));
                        continue;
                    }

                    for (long c = 0; c < dim; c++)
                    {
                        span[(int)(destination + row + (c * s3))] = span[(int)(source + row + (c * s3))];
                    }
                }
            }
        }
    }
}
