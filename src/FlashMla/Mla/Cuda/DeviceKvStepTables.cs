using FlashMla.Cuda;
using FlashMla.Tensors;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// A decode step's tables for the CUDA backend: filled every step from a
/// <see cref="PagedKvCacheAllocator"/> into one reusable page-locked host buffer and uploaded to
/// one device buffer with a single asynchronous copy. It holds the block table
/// [b, max_blocks_per_seq], cache_seqlens [b] and the slot mapping [b · tokens_per_request] of the
/// step's new tokens, as device tensors at fixed addresses, so a captured CUDA graph that reads
/// them (and the upload itself) can be replayed step after step. Nothing is allocated per step.
/// </summary>
/// <remarks>
/// <para>
/// A step: change the allocator, <see cref="Fill"/> (it first waits until the previous upload
/// has read the host buffer), <see cref="EnqueuePageCopies{T}"/> for every layer's cache, then
/// <see cref="EnqueueUpload"/>, the token writes through <see cref="SlotMapping"/>, the plan update
/// and the decodes on the same stream. The upload, the writes, the plan update and the decodes can
/// be one captured graph; after launching it, call <see cref="MarkInUse"/> so that the next
/// <see cref="Fill"/> waits for the graph's copy. Page copies vary from step to step, so they are
/// enqueued outside a graph, before it.
/// </para>
/// <para>
/// The host views (<see cref="HostBlockTable"/>, …) show what the last <see cref="Fill"/> wrote
/// (for checks and for the CPU backend); read them only while no upload is in flight.
/// </para>
/// </remarks>
public sealed class DeviceKvStepTables : IDisposable
{
    /// <summary>Each table starts at a multiple of 64 int32s (256 bytes) in both buffers.</summary>
    private const int Alignment = 64;

    private readonly List<PageCopy> _pageCopies = new(16);
    private readonly PinnedHostBuffer<int> _host;
    private readonly DeviceBuffer<int> _device;
    private readonly CudaEvent _uploaded;
    private int _numPages;
    private int _pageBlockSize;

    /// <summary>Allocates the host and device buffers of steps of <paramref name="batch"/> rows.</summary>
    /// <param name="context">The context.</param>
    /// <param name="batch">b, the decode's batch (≥ 1).</param>
    /// <param name="maxBlocksPerSequence">The block table's columns: the allocator's <see cref="PagedKvCacheAllocator.MaxBlocksPerSequence"/> (≥ 1).</param>
    /// <param name="tokensPerRequest">Slot-mapping rows per request, s_q for a decode step (≥ 0).</param>
    /// <exception cref="ArgumentNullException"><paramref name="context"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A count is out of range, or the tables would not fit in one int32-indexed buffer.</exception>
    /// <exception cref="CudaException">An allocation failed.</exception>
    public DeviceKvStepTables(CudaContext context, int batch, int maxBlocksPerSequence, int tokensPerRequest)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBlocksPerSequence, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(tokensPerRequest);
        var tableLength = (long)batch * maxBlocksPerSequence;
        var slotsLength = (long)batch * tokensPerRequest;
        var seqlensOffset = AlignUp(tableLength);
        var slotsOffset = seqlensOffset + AlignUp(batch);
        var total = slotsOffset + Math.Max(slotsLength, 1);
        if (total > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(
                nameof(batch),
                $"The tables of b {batch}, max_blocks_per_seq {maxBlocksPerSequence}, tokens_per_request {tokensPerRequest} need {total} int32s; at most {Array.MaxLength} are supported.");
        }

        Context = context;
        Batch = batch;
        MaxBlocksPerSequence = maxBlocksPerSequence;
        TokensPerRequest = tokensPerRequest;
        try
        {
            _host = PinnedHostBuffer<int>.Allocate(context, (int)total);
            _device = DeviceBuffer<int>.Allocate(context, total);
            _uploaded = CudaEvent.Create(context, timing: false);
        }
        catch
        {
            _host?.Dispose();
            _device?.Dispose();
            throw;
        }

        _host.Span.Clear();
        _host.Span[..(int)tableLength].Fill(BlockTables.UnusedBlockId);
        _host.Span.Slice((int)slotsOffset, (int)slotsLength).Fill(-1);
        BlockTable = new DeviceTensor<int>(_device.Pointer, TensorLayout.Contiguous(batch, maxBlocksPerSequence));
        CacheSeqlens = new DeviceTensor<int>(_device.Pointer + (ulong)(seqlensOffset * sizeof(int)), TensorLayout.Contiguous(batch));
        SlotMapping = new DeviceTensor<int>(_device.Pointer + (ulong)(slotsOffset * sizeof(int)), TensorLayout.Contiguous(slotsLength));
        HostBlockTable = new HostTensor<int>(_host.Memory[..(int)tableLength], BlockTable.Layout);
        HostCacheSeqlens = new HostTensor<int>(_host.Memory.Slice((int)seqlensOffset, batch), CacheSeqlens.Layout);
        HostSlotMapping = new HostTensor<int>(_host.Memory.Slice((int)slotsOffset, (int)slotsLength), SlotMapping.Layout);
    }

    /// <summary>The context.</summary>
    public CudaContext Context { get; }

    /// <summary>b.</summary>
    public int Batch { get; }

    /// <summary>The block table's columns.</summary>
    public int MaxBlocksPerSequence { get; }

    /// <summary>Slot-mapping rows per request.</summary>
    public int TokensPerRequest { get; }

    /// <summary>int32 [b, max_blocks_per_seq] on the device (a fixed address).</summary>
    public DeviceTensor<int> BlockTable { get; }

    /// <summary>int32 [b] on the device (a fixed address).</summary>
    public DeviceTensor<int> CacheSeqlens { get; }

    /// <summary>int32 [b · tokens_per_request] on the device (a fixed address): request i's new tokens at rows i · tokens_per_request …, −1 for padding.</summary>
    public DeviceTensor<int> SlotMapping { get; }

    /// <summary>The block table the last <see cref="Fill"/> wrote, in the page-locked host buffer.</summary>
    public HostTensor<int> HostBlockTable { get; }

    /// <summary>The cache_seqlens the last <see cref="Fill"/> wrote, in the page-locked host buffer.</summary>
    public HostTensor<int> HostCacheSeqlens { get; }

    /// <summary>The slot mapping the last <see cref="Fill"/> wrote, in the page-locked host buffer.</summary>
    public HostTensor<int> HostSlotMapping { get; }

    /// <summary>The step's page copies, in order (from the last <see cref="Fill"/>).</summary>
    public IReadOnlyList<PageCopy> PageCopies => _pageCopies;

    /// <summary>
    /// Waits until the last upload has read the host buffer, then writes the step's tables for
    /// <paramref name="batch"/> into it (see <see cref="PagedKvCacheAllocator.FillStep"/>).
    /// </summary>
    /// <param name="allocator">The allocator; its max_blocks_per_seq must be this table's.</param>
    /// <param name="batch">Distinct live requests, at most <see cref="Batch"/>; rows past them are padding.</param>
    /// <exception cref="ArgumentNullException"><paramref name="allocator"/> is null.</exception>
    /// <exception cref="ArgumentException">The allocator has another max_blocks_per_seq, or the batch is invalid (see <see cref="PagedKvCacheAllocator.FillStep"/>); nothing was written.</exception>
    /// <exception cref="ObjectDisposedException">The tables were disposed.</exception>
    public void Fill(PagedKvCacheAllocator allocator, ReadOnlySpan<KvRequestId> batch)
    {
        ArgumentNullException.ThrowIfNull(allocator);
        ObjectDisposedException.ThrowIf(_host.IsDisposed, this);
        if (allocator.MaxBlocksPerSequence != MaxBlocksPerSequence)
        {
            throw new ArgumentException(
                $"The allocator has max_blocks_per_seq {allocator.MaxBlocksPerSequence}; these tables have {MaxBlocksPerSequence} columns.", nameof(allocator));
        }

        _uploaded.Synchronize();
        allocator.FillStep(batch, TokensPerRequest, HostBlockTable.Span, HostCacheSeqlens.Span, HostSlotMapping.Span, _pageCopies);
        _numPages = allocator.NumPages;
        _pageBlockSize = allocator.PageBlockSize;
    }

    /// <summary>
    /// Enqueues the copy of the host buffer to the device tensors (one asynchronous copy from
    /// page-locked memory; graph-capturable). Outside a capture it also records that the host
    /// buffer is in use until the stream has passed the copy.
    /// </summary>
    /// <param name="stream">A stream of the tables' context.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    /// <exception cref="ArgumentException">The stream belongs to another context.</exception>
    /// <exception cref="CudaException">A driver call failed.</exception>
    public void EnqueueUpload(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CudaDecodeValidation.RequireContext(stream, Context);
        _device.CopyFromAsync(_host.Pointer, _host.Length, stream);
        if (!stream.IsCapturing())
        {
            _uploaded.Record(stream);
        }
    }

    /// <summary>
    /// Records that the host buffer is read by the work enqueued on <paramref name="stream"/> so far
    /// (a launched graph that contains <see cref="EnqueueUpload"/>): the next <see cref="Fill"/>
    /// waits for it.
    /// </summary>
    /// <param name="stream">A stream of the tables' context, not capturing.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    /// <exception cref="ArgumentException">The stream belongs to another context.</exception>
    /// <exception cref="CudaException">A driver call failed.</exception>
    public void MarkInUse(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CudaDecodeValidation.RequireContext(stream, Context);
        _uploaded.Record(stream);
    }

    /// <summary>
    /// Enqueues the step's page copies on one layer's cache, in order (device-to-device copies of
    /// the copied token slots). Call it for every layer, before the step's token writes.
    /// </summary>
    /// <typeparam name="T">The cache's element type.</typeparam>
    /// <param name="kCache">[num_blocks ≥ the allocator's pages, page_block_size, h_kv, d]; pages must not overlap.</param>
    /// <param name="stream">A stream of the tables' context.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">The cache does not hold the allocator's pages, or the stream belongs to another context; nothing was enqueued.</exception>
    /// <exception cref="InvalidOperationException">The tables were never filled.</exception>
    /// <exception cref="CudaException">A driver call failed.</exception>
    public void EnqueuePageCopies<T>(DeviceTensor<T> kCache, CudaStream stream)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(kCache);
        ArgumentNullException.ThrowIfNull(stream);
        CudaDecodeValidation.RequireContext(stream, Context);
        if (_pageBlockSize == 0)
        {
            throw new InvalidOperationException("The tables were never filled; call Fill first.");
        }

        var layout = kCache.Layout;
        PageCopyLayout.RequireCache(layout, _numPages, _pageBlockSize, nameof(kCache));
        var elementBytes = (ulong)System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        foreach (var copy in _pageCopies)
        {
            var rows = PageCopyLayout.Page(layout, copy.Tokens);
            var source = new DeviceTensor<T>(kCache.Pointer + ((ulong)PageCopyLayout.Offset(layout, copy.SourcePage) * elementBytes), rows);
            var destination = new DeviceTensor<T>(kCache.Pointer + ((ulong)PageCopyLayout.Offset(layout, copy.DestinationPage) * elementBytes), rows);
            destination.CopyFromAsync(source, stream);
        }
    }

    /// <summary>Frees the buffers and the event (the driver waits for work that uses them). Idempotent.</summary>
    public void Dispose()
    {
        _uploaded.Dispose();
        _device.Dispose();
        _host.Dispose();
    }

    private static long AlignUp(long length) => (length + Alignment - 1) / Alignment * Alignment;
}
