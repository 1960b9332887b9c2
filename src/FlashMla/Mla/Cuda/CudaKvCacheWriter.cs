using System.Globalization;
using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Tensors;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// Writes new tokens into a paged KV cache on a CUDA GPU through a device-resident slot mapping
/// (kernels/kv_cache_append.cu): token i's row goes to slot <c>slotMapping[i]</c>, row
/// <c>slot % page_block_size</c> of page <c>slot / page_block_size</c>; slot −1 is padding and is
/// skipped; nothing else in the cache changes. The semantics are those of
/// <see cref="Cpu.CpuKvCacheWriter"/>, bit for bit.
/// </summary>
/// <remarks>
/// <para>
/// <b>Use.</b> <see cref="Append{T}(DeviceTensor{T}, DeviceTensor{int}, DeviceTensor{T}, CudaStream)"/>
/// enqueues one kernel launch, never reads device data back and allocates nothing, so it can be
/// captured in a CUDA graph with the decode that follows (the slot mapping is read when the
/// kernel runs, so a replayed graph takes the step's new mapping from the same buffer).
/// bf16 and fp16 caches are supported (FP8 caches with scales are not yet).
/// </para>
/// <para>
/// <b>Guarded slots.</b> A slot outside <c>[0, num_blocks · page_block_size)</c> that is not −1 is
/// never written (a stray write would corrupt other requests' pages); the kernel records it in the
/// writer's error record, and <see cref="Synchronize"/> raises <see cref="MlaInputException"/>
/// (<see cref="MlaInputError.SlotOutOfRange"/>) naming the lowest such token and its slot. The
/// other tokens of the call are written. The record is cleared when it is reported, so the writer
/// and the context stay usable. The record is the writer's: appends on several streams share it,
/// so use a writer per stream where errors must be told apart. With <see cref="CheckedMode"/> set,
/// every append synchronizes and checks at once (except while the stream is being captured).
/// </para>
/// <para>
/// <b>Contract.</b> A slot may appear once per call (tokens that share a slot race); the sources
/// must not overlap the cache. Rows are contiguous; sources and cache are 16-byte aligned with
/// strides that are multiples of 8 elements (the kernel moves 16-byte vectors).
/// </para>
/// </remarks>
public sealed class CudaKvCacheWriter : IDisposable
{
    /// <summary>The kernel module (kernels/kv_cache_append.cu).</summary>
    internal const string ModuleName = "kv_cache_append";

    private readonly KernelEntry _kernel;
    private readonly DeviceBuffer<KvAppendErrorRecord> _errors;
    private KvCacheAppendShape _lastShape;
    private int _disposed;

    /// <summary>Loads the append kernel through the context's <see cref="KernelLibrary"/> and allocates the error record.</summary>
    /// <param name="context">The context.</param>
    /// <exception cref="ArgumentNullException"><paramref name="context"/> is null.</exception>
    /// <exception cref="InvalidOperationException">The module is not built for the device's target.</exception>
    /// <exception cref="CudaException">JIT compilation or a driver call failed.</exception>
    public CudaKvCacheWriter(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Context = context;
        _kernel = KernelLibrary.For(context).GetEntries(ModuleName).Single();
        _errors = DeviceBuffer<KvAppendErrorRecord>.Allocate(context, 1);
        _errors.CopyFrom([KvAppendErrorRecord.Clean]);
    }

    /// <summary>The context.</summary>
    public CudaContext Context { get; }

    /// <summary>The append kernel's descriptor (threads, token rows per CTA: 8 threads per row of 16-byte vectors).</summary>
    public KernelDescriptor Kernel => _kernel.Descriptor;

    /// <summary>
    /// When true, an append waits for the stream and checks the error record at once (skipped
    /// while the stream is being captured). When false (default), errors surface at <see cref="Synchronize"/>.
    /// </summary>
    public bool CheckedMode { get; set; }

    /// <summary>The grid of an append of <paramref name="tokens"/> tokens with <paramref name="kvHeads"/> heads: ceil(n · h_kv / rows per CTA) CTAs.</summary>
    /// <param name="tokens">n.</param>
    /// <param name="kvHeads">h_kv.</param>
    /// <returns>The CTA count (0 for n = 0: nothing is launched).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokens"/> is negative or <paramref name="kvHeads"/> is not positive.</exception>
    /// <exception cref="OverflowException">The grid would exceed <see cref="int.MaxValue"/> CTAs.</exception>
    public int GridFor(int tokens, int kvHeads)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvHeads);
        var rows = (long)tokens * kvHeads;
        var perCta = Kernel.RowsPerCta;
        return checked((int)((rows + perCta - 1) / perCta));
    }

    /// <summary>
    /// Enqueues the write of n latent rows: <paramref name="latent"/> [n, d] (h_kv = 1) or
    /// [n, h_kv, d], d the cache's head dimension (576: the 512 compressed-KV columns, then the
    /// 64-column RoPE key).
    /// </summary>
    /// <typeparam name="T"><see cref="Numerics.BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <param name="latent">The new rows; rows contiguous, any 16-byte multiple token and head strides.</param>
    /// <param name="slotMapping">int32 [n] on the device: each token's slot, or −1.</param>
    /// <param name="kCache">The cache, [num_blocks, page_block_size, h_kv, d].</param>
    /// <param name="stream">The stream.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">A shape, stride, alignment, element type or context is wrong; ParamName names the parameter; nothing was enqueued.</exception>
    /// <exception cref="MlaInputException">With <see cref="CheckedMode"/>: a slot was outside the cache.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public void Append<T>(DeviceTensor<T> latent, DeviceTensor<int> slotMapping, DeviceTensor<T> kCache, CudaStream stream)
        where T : unmanaged
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(latent);
        ArgumentNullException.ThrowIfNull(slotMapping);
        ArgumentNullException.ThrowIfNull(kCache);
        ArgumentNullException.ThrowIfNull(stream);
        var type = ElementTypes.Of<T>(nameof(kCache));
        var shape = KvCacheAppendValidation.ValidateCache(slotMapping.Layout, kCache.Layout);
        var source = KvCacheAppendValidation.ValidateSource(latent.Layout, shape, shape.HeadDim, nameof(latent));
        RequireDevice(type, latent, nameof(latent), slotMapping, kCache, stream);
        var compressedBytes = (ulong)(KvCacheAppendValidation.CompressedDim * type.SizeInBytes);
        Enqueue(shape, latent.Pointer, source, latent.Pointer + compressedBytes, source, slotMapping, kCache, stream);
    }

    /// <summary>
    /// Enqueues the write of n rows given in two parts, concatenated on the way in:
    /// <paramref name="compressedKv"/> [n, 512] (or [n, h_kv, 512]) as columns 0–511 and
    /// <paramref name="rope"/> [n, 64] (or [n, h_kv, 64]) as columns 512–575 of a 576-wide cache.
    /// </summary>
    /// <typeparam name="T"><see cref="Numerics.BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <param name="compressedKv">The compressed KV rows; rows contiguous, strides multiples of 16 bytes.</param>
    /// <param name="rope">The RoPE keys; rows contiguous, strides multiples of 16 bytes.</param>
    /// <param name="slotMapping">int32 [n] on the device: each token's slot, or −1.</param>
    /// <param name="kCache">The cache, [num_blocks, page_block_size, h_kv, 576].</param>
    /// <param name="stream">The stream.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">A shape, stride, alignment, element type or context is wrong, or the cache is not 576 wide; ParamName names the parameter; nothing was enqueued.</exception>
    /// <exception cref="MlaInputException">With <see cref="CheckedMode"/>: a slot was outside the cache.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public void Append<T>(DeviceTensor<T> compressedKv, DeviceTensor<T> rope, DeviceTensor<int> slotMapping, DeviceTensor<T> kCache, CudaStream stream)
        where T : unmanaged
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(compressedKv);
        ArgumentNullException.ThrowIfNull(rope);
        ArgumentNullException.ThrowIfNull(slotMapping);
        ArgumentNullException.ThrowIfNull(kCache);
        ArgumentNullException.ThrowIfNull(stream);
        var type = ElementTypes.Of<T>(nameof(kCache));
        var shape = KvCacheAppendValidation.ValidateCache(slotMapping.Layout, kCache.Layout);
        KvCacheAppendValidation.RequireSplitForm(shape);
        var nope = KvCacheAppendValidation.ValidateSource(compressedKv.Layout, shape, KvCacheAppendValidation.CompressedDim, nameof(compressedKv));
        var ropeSource = KvCacheAppendValidation.ValidateSource(rope.Layout, shape, KvCacheAppendValidation.RopeDim, nameof(rope));
        RequireDevice(type, compressedKv, nameof(compressedKv), slotMapping, kCache, stream);
        CudaDecodeValidation.RequireDeviceLayout(rope.Pointer, rope.Layout, type.SizeInBytes, CudaDecodeValidation.VectorBytes, nameof(rope));
        Enqueue(shape, compressedKv.Pointer, nope, rope.Pointer, ropeSource, slotMapping, kCache, stream);
    }

    /// <summary>
    /// The synchronization point: waits for <paramref name="stream"/>, then checks the writer's
    /// error record and clears it when it holds an error.
    /// </summary>
    /// <param name="stream">The stream the appends ran on.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    /// <exception cref="MlaInputException">A slot was outside the cache (<see cref="MlaInputError.SlotOutOfRange"/>): <see cref="MlaInputException.TokenIndex"/> and <see cref="MlaInputException.Slot"/> name the lowest such token; those tokens were not written, the others were.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    public void Synchronize(CudaStream stream)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(stream);
        stream.Synchronize();
        Span<KvAppendErrorRecord> record = stackalloc KvAppendErrorRecord[1];
        _errors.CopyTo(record, stream);
        if (record[0].Flags == 0)
        {
            return;
        }

        _errors.CopyFromAsync([KvAppendErrorRecord.Clean], stream);
        stream.Synchronize();
        throw BuildException(record[0], _lastShape);
    }

    /// <summary>Frees the error record. Idempotent.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _errors.Dispose();
    }

    private static MlaInputException BuildException(KvAppendErrorRecord record, KvCacheAppendShape shape)
    {
        var token = record.FirstBadToken;
        var slot = record.FirstBadSlot;
        var others = record.BadTokens > 1
            ? string.Create(CultureInfo.InvariantCulture, $" ({record.BadTokens} tokens in all had such slots)")
            : string.Empty;
        var message = (record.Flags & KvAppendErrorRecord.SlotFlag) != 0
            ? $"The CUDA KV cache append rejected device-resident input: {KvCacheAppendValidation.SlotMessage(token, slot, shape)}{others}. Those tokens were not written; the other tokens were."
            : string.Create(CultureInfo.InvariantCulture, $"The CUDA KV cache append reported error flags 0x{record.Flags:x}.");
        return new MlaInputException(token, slot, message);
    }

    private void RequireDevice<T>(ElementType type, DeviceTensor<T> source, string sourceName, DeviceTensor<int> slotMapping, DeviceTensor<T> kCache, CudaStream stream)
        where T : unmanaged
    {
        CudaDecodeValidation.RequireContext(stream, Context);
        CudaDecodeValidation.RequireDeviceLayout(source.Pointer, source.Layout, type.SizeInBytes, CudaDecodeValidation.VectorBytes, sourceName);
        CudaDecodeValidation.RequireDeviceLayout(kCache.Pointer, kCache.Layout, type.SizeInBytes, CudaDecodeValidation.VectorBytes, nameof(kCache));
        CudaDecodeValidation.RequireAddress(slotMapping.Pointer, sizeof(int), nameof(slotMapping));
    }

    private void Enqueue<T>(
        KvCacheAppendShape shape,
        ulong nope,
        KvAppendSource nopeSource,
        ulong rope,
        KvAppendSource ropeSource,
        DeviceTensor<int> slotMapping,
        DeviceTensor<T> kCache,
        CudaStream stream)
        where T : unmanaged
    {
        _lastShape = shape;
        if (shape.Tokens == 0)
        {
            return;
        }

        var k = kCache.Layout.Strides;
        var parameters = new KvAppendParams
        {
            Nope = nope,
            Rope = rope,
            SlotMapping = slotMapping.Pointer,
            KCache = kCache.Pointer,
            Error = _errors.Pointer,
            NopeTokenStride = nopeSource.TokenStride,
            NopeHeadStride = nopeSource.HeadStride,
            RopeTokenStride = ropeSource.TokenStride,
            RopeHeadStride = ropeSource.HeadStride,
            SlotStride = slotMapping.Layout.Strides[0],
            KBlockStride = k[0],
            KRowStride = k[1],
            KHeadStride = k[2],
            NumTokens = shape.Tokens,
            HKv = shape.KvHeads,
            HeadDim = shape.HeadDim,
            PageBlockSize = shape.PageBlockSize,
            NumBlocks = shape.NumBlocks,
        };
        _kernel.Launch(new Dim3((uint)GridFor(shape.Tokens, shape.KvHeads)), parameters, stream);
        if (CheckedMode && !stream.IsCapturing())
        {
            Synchronize(stream);
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
}
