using System.Globalization;

namespace FlashMla.Mla;

/// <summary>
/// The pages of one paged KV cache shape, shared by all layers: it hands out pages as requests
/// grow, takes them back when requests finish, keeps each request's page list and writes the
/// tables of a decode step (block table, cache_seqlens, slot mapping). Requests may share the
/// pages of a common prefix, with reference counts as in vLLM; a shared partial page is copied on
/// write.
/// </summary>
/// <remarks>
/// <para>
/// <b>Tokens and steps.</b> <see cref="Append"/> (and <see cref="AddRequest"/>) adds tokens to a
/// request: their pages are taken at once, and the tokens are <i>pending</i> until a step's tables
/// are written (<see cref="FillStep"/>), which hands out their slots in the slot mapping. A step's
/// device work runs in this order: the step's page copies (<see cref="PendingPageCopies"/>, moved
/// into the step by <see cref="FillStep"/>) on every layer's cache, then the writes of the new
/// tokens through the slot mapping, then the decode. Slots are computed when the step is filled,
/// from the request's pages at that time.
/// </para>
/// <para>
/// <b>Sharing.</b> <see cref="Fork(KvRequestId, int)"/> starts a request with another's prefix of
/// tokens that are already in the cache (not pending), sharing its pages: each page's reference
/// count is the number of requests whose page list holds it. When a request appends to a partial
/// last page that another request shares, it takes a new page and the allocator records a
/// <see cref="PageCopy"/> of the filled slots. Full pages stay shared. A page returns to the free
/// list when its count drops to 0.
/// </para>
/// <para>
/// <b>Errors.</b> Every operation checks everything before it changes anything, so a failed call
/// leaves the allocator as it was: bad arguments raise <see cref="ArgumentException"/> (the
/// <see cref="ArgumentOutOfRangeException"/> subtype for counts), and running out of pages raises
/// <see cref="KvCacheOutOfPagesException"/> with the numbers.
/// </para>
/// <para>
/// <b>Allocation.</b> Page lists are preallocated per request slot (max_blocks_per_seq entries)
/// and slots of freed requests are reused, so steady-state steps allocate nothing. Not thread-safe.
/// </para>
/// </remarks>
public sealed class PagedKvCacheAllocator
{
    private readonly int[] _refCounts;
    private readonly int[] _freePages;
    private readonly List<RequestSlot> _slots = [];
    private readonly List<int> _freeSlots = [];
    private readonly List<PageCopy> _pendingCopies = new(16);
    private int _freeCount;
    private int _stamp;

    /// <summary>Creates an allocator with every page free.</summary>
    /// <param name="numPages">The cache's pages (num_blocks of every layer's cache, ≥ 1).</param>
    /// <param name="pageBlockSize">Tokens per page (≥ 1).</param>
    /// <param name="maxBlocksPerSequence">The block table's columns: the most pages one request may hold (≥ 1).</param>
    /// <exception cref="ArgumentOutOfRangeException">A count is less than 1, slot ids (page · page_block_size + offset) would not fit in int32, or a request's capacity (max_blocks_per_seq · page_block_size) would not.</exception>
    public PagedKvCacheAllocator(int numPages, int pageBlockSize, int maxBlocksPerSequence)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numPages, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageBlockSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBlocksPerSequence, 1);
        if ((long)numPages * pageBlockSize > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(
                nameof(numPages),
                $"num_pages {numPages} × page_block_size {pageBlockSize} = {(long)numPages * pageBlockSize} slots; slot ids are int32, so at most {int.MaxValue} slots are supported.");
        }

        if ((long)maxBlocksPerSequence * pageBlockSize > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(
                nameof(maxBlocksPerSequence),
                $"max_blocks_per_seq {maxBlocksPerSequence} × page_block_size {pageBlockSize} = {(long)maxBlocksPerSequence * pageBlockSize} tokens per request; sequence lengths are int32, so at most {int.MaxValue} are supported.");
        }

        NumPages = numPages;
        PageBlockSize = pageBlockSize;
        MaxBlocksPerSequence = maxBlocksPerSequence;
        _refCounts = new int[numPages];
        _freePages = new int[numPages];
        for (var i = 0; i < numPages; i++)
        {
            // A stack: page 0 is handed out first.
            _freePages[i] = numPages - 1 - i;
        }

        _freeCount = numPages;
    }

    /// <summary>The cache's pages (num_blocks).</summary>
    public int NumPages { get; }

    /// <summary>Tokens per page.</summary>
    public int PageBlockSize { get; }

    /// <summary>The block table's columns: the most pages one request may hold.</summary>
    public int MaxBlocksPerSequence { get; }

    /// <summary>The most tokens one request may hold: max_blocks_per_seq · page_block_size.</summary>
    public int MaxTokensPerRequest => MaxBlocksPerSequence * PageBlockSize;

    /// <summary>Pages no request holds.</summary>
    public int FreePages => _freeCount;

    /// <summary>Live requests.</summary>
    public int RequestCount => _slots.Count - _freeSlots.Count;

    /// <summary>
    /// The page copies recorded since the last <see cref="FillStep"/>, in the order they must run
    /// (each before the step's token writes).
    /// </summary>
    public IReadOnlyList<PageCopy> PendingPageCopies => _pendingCopies;

    /// <summary>Pages that hold <paramref name="tokens"/> tokens: ceil(tokens / page_block_size).</summary>
    /// <param name="tokens">A token count (≥ 0).</param>
    /// <returns>The page count.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokens"/> is negative.</exception>
    public int PagesFor(int tokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        return (int)(((long)tokens + PageBlockSize - 1) / PageBlockSize);
    }

    /// <summary>Starts a request and takes the pages for its first <paramref name="tokens"/> tokens, which are pending.</summary>
    /// <param name="tokens">The request's first tokens (a prompt), 0 … <see cref="MaxTokensPerRequest"/>.</param>
    /// <returns>The request.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokens"/> is negative or exceeds <see cref="MaxTokensPerRequest"/>.</exception>
    /// <exception cref="KvCacheOutOfPagesException">Fewer pages are free than the tokens need; nothing changed.</exception>
    public KvRequestId AddRequest(int tokens = 0)
    {
        RequireTokens(tokens, 0, nameof(tokens));
        var pages = PagesFor(tokens);
        RequireFreePages(pages, $"starting a request of {tokens} tokens");
        var slot = TakeSlot();
        for (var i = 0; i < pages; i++)
        {
            slot.Pages[i] = TakePage();
        }

        slot.PageCount = pages;
        slot.Length = tokens;
        slot.Pending = tokens;
        return slot.Id;
    }

    /// <summary>
    /// Starts a request whose first <paramref name="prefixTokens"/> tokens are those of
    /// <paramref name="source"/>, sharing its pages (no page is taken, none is copied yet).
    /// </summary>
    /// <param name="source">A live request.</param>
    /// <param name="prefixTokens">Tokens to share, 0 … the source's tokens in the cache (its length less its pending tokens).</param>
    /// <returns>The new request; its shared tokens are in the cache, so none is pending.</returns>
    /// <exception cref="ArgumentException"><paramref name="source"/> is not a live request of this allocator.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="prefixTokens"/> is negative or includes tokens not yet in the cache.</exception>
    public KvRequestId Fork(KvRequestId source, int prefixTokens)
    {
        var from = Slot(source, nameof(source));
        var cached = from.Length - from.Pending;
        if (prefixTokens < 0 || prefixTokens > cached)
        {
            throw new ArgumentOutOfRangeException(
                nameof(prefixTokens),
                $"A fork shares 0 … {cached} tokens of {source} (its {from.Length} tokens less {from.Pending} pending, whose slots no step has handed out yet); got {prefixTokens}.");
        }

        var pages = PagesFor(prefixTokens);
        var slot = TakeSlot();
        for (var i = 0; i < pages; i++)
        {
            var page = from.Pages[i];
            slot.Pages[i] = page;
            _refCounts[page]++;
        }

        slot.PageCount = pages;
        slot.Length = prefixTokens;
        slot.Pending = 0;
        return slot.Id;
    }

    /// <summary>Starts a request that shares every token of <paramref name="source"/> that is in the cache.</summary>
    /// <param name="source">A live request.</param>
    /// <returns>The new request.</returns>
    /// <exception cref="ArgumentException"><paramref name="source"/> is not a live request of this allocator.</exception>
    public KvRequestId Fork(KvRequestId source)
    {
        var from = Slot(source, nameof(source));
        return Fork(source, from.Length - from.Pending);
    }

    /// <summary>
    /// The pages <see cref="Append"/> would take for <paramref name="tokens"/> more tokens: the new
    /// pages, plus one when the last page is partial and shared (copy on write).
    /// </summary>
    /// <param name="request">A live request.</param>
    /// <param name="tokens">Tokens to add (≥ 0).</param>
    /// <returns>The page count.</returns>
    /// <exception cref="ArgumentException"><paramref name="request"/> is not a live request of this allocator.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokens"/> is negative or the request would exceed <see cref="MaxTokensPerRequest"/>.</exception>
    public int PagesToAppend(KvRequestId request, int tokens)
    {
        var slot = Slot(request, nameof(request));
        RequireTokens(tokens, slot.Length, nameof(tokens));
        return PagesToAppend(slot, tokens);
    }

    /// <summary>
    /// Adds <paramref name="tokens"/> pending tokens to a request and takes the pages they need.
    /// When the request's last page is partial and shared, the request gets a new page for it and
    /// a <see cref="PageCopy"/> of its filled slots is recorded.
    /// </summary>
    /// <param name="request">A live request.</param>
    /// <param name="tokens">Tokens to add (≥ 0).</param>
    /// <exception cref="ArgumentException"><paramref name="request"/> is not a live request of this allocator.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokens"/> is negative or the request would exceed <see cref="MaxTokensPerRequest"/>.</exception>
    /// <exception cref="KvCacheOutOfPagesException">Fewer pages are free than the tokens need; nothing changed.</exception>
    public void Append(KvRequestId request, int tokens)
    {
        var slot = Slot(request, nameof(request));
        RequireTokens(tokens, slot.Length, nameof(tokens));
        RequireFreePages(PagesToAppend(slot, tokens), $"appending {tokens} tokens to {request} of {slot.Length}");
        if (tokens == 0)
        {
            return;
        }

        var filled = slot.Length % PageBlockSize;
        if (filled != 0)
        {
            var last = slot.Pages[slot.PageCount - 1];
            if (_refCounts[last] > 1)
            {
                var copy = TakePage();
                _refCounts[last]--;
                slot.Pages[slot.PageCount - 1] = copy;
                _pendingCopies.Add(new PageCopy(last, copy, filled));
            }
        }

        var newLength = slot.Length + tokens;
        var pages = PagesFor(newLength);
        for (var i = slot.PageCount; i < pages; i++)
        {
            slot.Pages[i] = TakePage();
        }

        slot.PageCount = pages;
        slot.Length = newLength;
        slot.Pending += tokens;
    }

    /// <summary>
    /// Ends a request: drops its reference to each of its pages; pages no other request holds
    /// become free. Recorded page copies stay: a later copy may read a page that an earlier one
    /// fills, and a copy into a page that was freed and handed out again runs before anything its
    /// new owner writes or copies into it.
    /// </summary>
    /// <param name="request">A live request; its id is invalid afterwards.</param>
    /// <exception cref="ArgumentException"><paramref name="request"/> is not a live request of this allocator.</exception>
    public void Free(KvRequestId request)
    {
        var slot = Slot(request, nameof(request));
        for (var i = 0; i < slot.PageCount; i++)
        {
            var page = slot.Pages[i];
            if (--_refCounts[page] == 0)
            {
                _freePages[_freeCount++] = page;
            }
        }

        slot.PageCount = 0;
        slot.Length = 0;
        slot.Pending = 0;
        slot.Live = false;
        slot.Generation++;
        _freeSlots.Add(request.Index);
    }

    /// <summary>Whether <paramref name="request"/> is a live request of this allocator.</summary>
    /// <param name="request">The id.</param>
    /// <returns>True while the request has not been freed.</returns>
    public bool Contains(KvRequestId request) =>
        request.Index >= 0 && request.Index < _slots.Count && _slots[request.Index] is { Live: true } s && s.Generation == request.Generation;

    /// <summary>The request's tokens (cache_seqlens), pending ones included.</summary>
    /// <param name="request">A live request.</param>
    /// <returns>The length.</returns>
    /// <exception cref="ArgumentException"><paramref name="request"/> is not a live request of this allocator.</exception>
    public int GetLength(KvRequestId request) => Slot(request, nameof(request)).Length;

    /// <summary>The request's tokens whose slots no step has handed out yet (its last ones).</summary>
    /// <param name="request">A live request.</param>
    /// <returns>The pending token count.</returns>
    /// <exception cref="ArgumentException"><paramref name="request"/> is not a live request of this allocator.</exception>
    public int GetPendingTokens(KvRequestId request) => Slot(request, nameof(request)).Pending;

    /// <summary>The request's pages in token order: page j holds tokens j·page_block_size … (j+1)·page_block_size − 1.</summary>
    /// <param name="request">A live request.</param>
    /// <returns>The page ids (valid until the request changes).</returns>
    /// <exception cref="ArgumentException"><paramref name="request"/> is not a live request of this allocator.</exception>
    public ReadOnlySpan<int> GetPages(KvRequestId request)
    {
        var slot = Slot(request, nameof(request));
        return slot.Pages.AsSpan(0, slot.PageCount);
    }

    /// <summary>The number of live requests whose page list holds <paramref name="page"/> (0: free).</summary>
    /// <param name="page">A page id in [0, <see cref="NumPages"/>).</param>
    /// <returns>The reference count.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="page"/> is out of range.</exception>
    public int GetReferenceCount(int page)
    {
        if ((uint)page >= (uint)NumPages)
        {
            throw new ArgumentOutOfRangeException(nameof(page), page, $"Page ids are in [0, {NumPages}).");
        }

        return _refCounts[page];
    }

    /// <summary>
    /// Writes a decode step's tables for the requests of <paramref name="batch"/>, row i for
    /// request i; rows past the batch are padding (length 0). Row i of the block table holds the
    /// request's pages followed by <see cref="BlockTables.UnusedBlockId"/>; its cache_seqlens entry
    /// is its length; rows i·tokens_per_request … of the slot mapping hold the slots
    /// (page · page_block_size + offset) of its pending tokens in token order, followed by −1
    /// (padding). The batch's pending tokens are then no longer pending, and the recorded page copies
    /// move into <paramref name="pageCopies"/>. Nothing is written when a check fails.
    /// </summary>
    /// <param name="batch">Distinct live requests, at most as many as the rows of <paramref name="cacheSeqlens"/>.</param>
    /// <param name="tokensPerRequest">Slot-mapping rows per request (s_q for a decode step; ≥ 0); each request's pending tokens must fit.</param>
    /// <param name="blockTable">int32 [b, max_blocks_per_seq], row-major: b · <see cref="MaxBlocksPerSequence"/> entries.</param>
    /// <param name="cacheSeqlens">int32 [b]: its length is the step's batch b.</param>
    /// <param name="slotMapping">int32 [b · tokens_per_request].</param>
    /// <param name="pageCopies">Receives the step's page copies (cleared first), to run before the step's token writes.</param>
    /// <exception cref="ArgumentNullException"><paramref name="pageCopies"/> is null.</exception>
    /// <exception cref="ArgumentException">A span has the wrong length, the batch is longer than b, a request is not live or appears twice.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokensPerRequest"/> is negative, or a request has more pending tokens than it.</exception>
    public void FillStep(
        ReadOnlySpan<KvRequestId> batch,
        int tokensPerRequest,
        Span<int> blockTable,
        Span<int> cacheSeqlens,
        Span<int> slotMapping,
        List<PageCopy> pageCopies)
    {
        ArgumentNullException.ThrowIfNull(pageCopies);
        ArgumentOutOfRangeException.ThrowIfNegative(tokensPerRequest);
        var rows = cacheSeqlens.Length;
        if (batch.Length > rows)
        {
            throw new ArgumentException($"The batch has {batch.Length} requests but the step has {rows} rows (cacheSeqlens' length).", nameof(batch));
        }

        if (blockTable.Length != (long)rows * MaxBlocksPerSequence)
        {
            throw new ArgumentException(
                $"blockTable must hold [{rows}, {MaxBlocksPerSequence}] = {(long)rows * MaxBlocksPerSequence} entries (b from cacheSeqlens, max_blocks_per_seq of the allocator); got {blockTable.Length}.",
                nameof(blockTable));
        }

        if (slotMapping.Length != (long)rows * tokensPerRequest)
        {
            throw new ArgumentException(
                $"slotMapping must hold b · tokens_per_request = {rows} · {tokensPerRequest} = {(long)rows * tokensPerRequest} entries; got {slotMapping.Length}.",
                nameof(slotMapping));
        }

        var stamp = ++_stamp;
        for (var i = 0; i < batch.Length; i++)
        {
            var slot = Slot(batch[i], nameof(batch));
            if (slot.Stamp == stamp)
            {
                throw new ArgumentException($"{batch[i]} appears twice in the batch (row {i}).", nameof(batch));
            }

            slot.Stamp = stamp;
            if (slot.Pending > tokensPerRequest)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(tokensPerRequest),
                    $"{batch[i]} (row {i}) has {slot.Pending} pending tokens but the step has {tokensPerRequest} slot-mapping rows per request.");
            }
        }

        var width = MaxBlocksPerSequence;
        for (var i = 0; i < rows; i++)
        {
            var tableRow = blockTable.Slice(i * width, width);
            var slotRow = slotMapping.Slice(i * tokensPerRequest, tokensPerRequest);
            if (i >= batch.Length)
            {
                tableRow.Fill(BlockTables.UnusedBlockId);
                cacheSeqlens[i] = 0;
                slotRow.Fill(-1);
                continue;
            }

            var slot = _slots[batch[i].Index];
            slot.Pages.AsSpan(0, slot.PageCount).CopyTo(tableRow);
            tableRow[slot.PageCount..].Fill(BlockTables.UnusedBlockId);
            cacheSeqlens[i] = slot.Length;
            var first = slot.Length - slot.Pending;
            for (var t = 0; t < slot.Pending; t++)
            {
                var token = first + t;
                slotRow[t] = (slot.Pages[token / PageBlockSize] * PageBlockSize) + (token % PageBlockSize);
            }

            slotRow[slot.Pending..].Fill(-1);
            slot.Pending = 0;
        }

        pageCopies.Clear();
        pageCopies.AddRange(_pendingCopies);
        _pendingCopies.Clear();
    }

    /// <summary>Formats as "paged KV cache: 1000 pages of 64 tokens, 12 free, 3 requests".</summary>
    /// <returns>The text.</returns>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"paged KV cache: {NumPages} pages of {PageBlockSize} tokens, {FreePages} free, {RequestCount} requests");

    private int PagesToAppend(RequestSlot slot, int tokens)
    {
        if (tokens == 0)
        {
            return 0;
        }

        var pages = PagesFor(slot.Length + tokens) - slot.PageCount;
        var copyOnWrite = slot.Length % PageBlockSize != 0 && _refCounts[slot.Pages[slot.PageCount - 1]] > 1;
        return pages + (copyOnWrite ? 1 : 0);
    }

    private void RequireTokens(int tokens, int length, string paramName)
    {
        if (tokens < 0)
        {
            throw new ArgumentOutOfRangeException(paramName, tokens, "The token count must be at least 0.");
        }

        if ((long)length + tokens > MaxTokensPerRequest)
        {
            throw new ArgumentOutOfRangeException(
                paramName,
                $"A request of {length} tokens cannot take {tokens} more: at most {MaxTokensPerRequest} tokens fit a request (max_blocks_per_seq {MaxBlocksPerSequence} × page_block_size {PageBlockSize}).");
        }
    }

    private void RequireFreePages(int pages, string what)
    {
        if (pages > _freeCount)
        {
            throw new KvCacheOutOfPagesException(
                pages,
                _freeCount,
                NumPages,
                $"The KV cache is out of pages: {what} needs {pages} page(s), but only {_freeCount} of {NumPages} are free ({NumPages - _freeCount} held by {RequestCount} request(s)). Nothing was changed.");
        }
    }

    private int TakePage()
    {
        var page = _freePages[--_freeCount];
        _refCounts[page] = 1;
        return page;
    }

    private RequestSlot TakeSlot()
    {
        RequestSlot slot;
        if (_freeSlots.Count > 0)
        {
            var index = _freeSlots[^1];
            _freeSlots.RemoveAt(_freeSlots.Count - 1);
            slot = _slots[index];
        }
        else
        {
            slot = new RequestSlot(_slots.Count, MaxBlocksPerSequence);
            _slots.Add(slot);
        }

        slot.Live = true;
        return slot;
    }

    private RequestSlot Slot(KvRequestId request, string paramName)
    {
        if (!Contains(request))
        {
            throw new ArgumentException($"{request} is not a live request of this allocator (freed, or from another allocator).", paramName);
        }

        return _slots[request.Index];
    }

    private sealed class RequestSlot(int index, int maxBlocks)
    {
        public int Index { get; } = index;

        public int[] Pages { get; } = new int[maxBlocks];

        public int PageCount { get; set; }

        public int Length { get; set; }

        public int Pending { get; set; }

        /// <summary>Starts at 1, so that <c>default(KvRequestId)</c> is never a live request.</summary>
        public int Generation { get; set; } = 1;

        public bool Live { get; set; }

        public int Stamp { get; set; }

        public KvRequestId Id => new(Index, Generation);
    }
}
