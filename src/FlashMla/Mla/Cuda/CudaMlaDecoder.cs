using System.Globalization;
using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// MLA decoding on a CUDA GPU with the semantics of FlashMLA's dense
/// <c>flash_mla_with_kvcache</c> (see docs/architecture.md): a schedule kernel splits the KV work
/// into parts, a split-KV kernel computes partial attention per part, and a combine kernel merges
/// the partial results of split requests.
/// </summary>
/// <remarks>
/// <para>
/// <b>Use.</b> Create a plan for a shape with <see cref="CreatePlan"/>; for each step, enqueue
/// <see cref="UpdatePlan"/> (whenever the sequence lengths changed) and <see cref="Decode{T}"/> on a
/// stream. Both are asynchronous, never read device data back on the host, and can be captured
/// into a CUDA graph. <see cref="DecodeHost{T}"/> is a synchronous convenience over host tensors.
/// </para>
/// <para>
/// <b>Guarded inputs.</b> Sequence lengths and block ids live on the device, so only the kernels
/// check them: a length outside <c>[0, max_blocks_per_seq · page_block_size]</c> or a block id of
/// a page in use outside <c>[0, num_blocks)</c> is skipped (treated as an empty request or a zero
/// page) and recorded in the plan's error record. The record is checked at the synchronization
/// point: <see cref="Synchronize(CudaStream)"/> waits for the stream and raises
/// <see cref="MlaInputException"/> naming the lowest offending request. With
/// <see cref="CheckedMode"/> set, every <see cref="Decode{T}"/> synchronizes and checks at once
/// (except while the stream is being captured). The record is cleared when the plan is created
/// and after an error was reported, so the decoder and the context stay usable.
/// </para>
/// <para>
/// <b>Threading.</b> The decoder may be used from several threads with different plans and
/// streams; a plan must not be used by two streams at once.
/// </para>
/// </remarks>
public sealed class CudaMlaDecoder : IDisposable
{
    private readonly Lock _pendingLock = new();
    private readonly HashSet<CudaDecodePlan> _pending = [];
    private readonly CudaKernel _schedule;
    private readonly Dictionary<(ElementType Dtype, int Rows), DecodeVariant> _decode = [];
    private readonly Dictionary<ElementType, CudaKernel> _combine = [];
    private readonly CudaStream _hostStream;
    private readonly int _maxBatch;
    private int _disposed;

    /// <summary>
    /// Loads the decode kernels (modules decode_schedule, decode_splitkv, decode_combine and fill)
    /// through the context's <see cref="KernelLibrary"/>, picks the split-KV variants that fit the
    /// device's shared memory and raises the kernels' dynamic shared memory limits.
    /// </summary>
    /// <param name="context">The context.</param>
    /// <exception cref="NotSupportedException">The device is older than compute capability 8.0, or has too little shared memory per block.</exception>
    /// <exception cref="InvalidOperationException">A PTX module is not embedded.</exception>
    /// <exception cref="CudaException">JIT compilation or a driver call failed.</exception>
    public CudaMlaDecoder(CudaContext context)
        : this(context, context?.Device.MaxSharedMemoryPerBlockOptin ?? throw new ArgumentNullException(nameof(context)))
    {
    }

    /// <summary>
    /// Creates a decoder that picks its kernels as if the device allowed only
    /// <paramref name="sharedMemoryLimitBytes"/> of shared memory per block; tests use it to run the
    /// kernels of smaller devices (the one-stage kernel of sm_80) on the device at hand.
    /// </summary>
    /// <param name="context">The context.</param>
    /// <param name="sharedMemoryLimitBytes">At most the device's opt-in limit.</param>
    internal CudaMlaDecoder(CudaContext context, int sharedMemoryLimitBytes)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(sharedMemoryLimitBytes, context.Device.MaxSharedMemoryPerBlockOptin);
        Context = context;
        var kernels = context.Kernels;
        var optin = sharedMemoryLimitBytes;

        _schedule = kernels.GetKernel(DecodeKernelGeometry.ScheduleModule, DecodeKernelGeometry.ScheduleKernel);
        var scheduleLimit = optin - _schedule.StaticSharedSizeBytes;
        _schedule.SetMaxDynamicSharedMemory(scheduleLimit);
        _maxBatch = scheduleLimit / 4;

        foreach (var dtype in ElementTypes.All)
        {
            var limits = new Dictionary<CudaKernel, int>();
            foreach (var rows in DecodeKernelGeometry.RowsPerCtaOptions)
            {
                var variant = SelectVariant(kernels, dtype, rows, optin);
                _decode.Add((dtype, rows), variant);
                limits[variant.Kernel] = Math.Max(limits.GetValueOrDefault(variant.Kernel), variant.SharedMemoryBytes);
            }

            foreach (var (kernel, bytes) in limits)
            {
                kernel.SetMaxDynamicSharedMemory(bytes);
            }

            _combine.Add(dtype, kernels.GetKernel(DecodeKernelGeometry.CombineModule, DecodeKernelGeometry.CombineKernel(dtype.ShortName())));
        }

        _ = kernels.GetKernel(DeviceFill.ModuleName, DeviceFill.KernelName);
        _hostStream = CudaStream.Create(context);
    }

    /// <summary>The context.</summary>
    public CudaContext Context { get; }

    /// <summary>The K-ring depth of the split-KV kernel used for an element type and a row count per KV head.</summary>
    internal int DecodeStages(ElementType dtype, int rowsPerKvHead) => _decode[(dtype, DecodeKernelGeometry.RowsPerCta(rowsPerKvHead))].Stages;

    /// <summary>
    /// When true, <see cref="Decode{T}"/> waits for the stream and checks the plan's error record
    /// after every call, raising <see cref="MlaInputException"/> at once (skipped while the stream
    /// is being captured into a graph). When false (default), errors surface at
    /// <see cref="Synchronize(CudaStream)"/>.
    /// </summary>
    public bool CheckedMode { get; set; }

    /// <summary>The split-KV kernels' JIT info logs (registers, spills), by kernel.</summary>
    public string JitInfoLog =>
        string.Join(
            Environment.NewLine,
            Context.Kernels.JitInfoLogs.Where(p => p.Key.StartsWith("decode", StringComparison.Ordinal)).Select(p => $"[{p.Key}]{Environment.NewLine}{p.Value}"));

    /// <summary>The number of parts for a shape on this device (<see cref="DecodeSchedule.PartsFor"/> with the SM count).</summary>
    /// <param name="queryLength">s_q.</param>
    /// <param name="queryHeads">h_q.</param>
    /// <param name="kvHeads">h_kv.</param>
    /// <returns>The part count.</returns>
    public int NumPartsFor(int queryLength, int queryHeads, int kvHeads) =>
        DecodeSchedule.PartsFor(Context.Device.MultiprocessorCount, queryLength, queryHeads, kvHeads);

    /// <summary>
    /// Allocates the workspace of decodes of one shape: parts [num_parts·8], num_splits [b+1], the
    /// error record [4] (cleared), o_accum float [(b+num_parts)·h_kv·rows·512] and lse_accum float
    /// [(b+num_parts)·h_kv·rows], with rows = s_q·h_q/h_kv and num_parts from <see cref="NumPartsFor"/>.
    /// </summary>
    /// <param name="batch">b (≥ 1).</param>
    /// <param name="queryLength">s_q (≥ 1).</param>
    /// <param name="queryHeads">h_q (≥ 1).</param>
    /// <param name="kvHeads">h_kv (≥ 1, divides h_q).</param>
    /// <returns>The plan; call <see cref="UpdatePlan"/> before decoding.</returns>
    public CudaDecodePlan CreatePlan(int batch, int queryLength, int queryHeads, int kvHeads)
    {
        ThrowIfDisposed();
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(queryLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(queryHeads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvHeads, 1);
        if (queryHeads % kvHeads != 0)
        {
            throw new ArgumentException($"h_q = {queryHeads} must be a multiple of h_kv = {kvHeads}.", nameof(kvHeads));
        }

        if (batch > _maxBatch)
        {
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"The schedule kernel handles at most {_maxBatch} requests on {Context.Device} (4 bytes of shared memory each).");
        }

        return new CudaDecodePlan(Context, batch, queryLength, queryHeads, kvHeads, NumPartsFor(queryLength, queryHeads, kvHeads));
    }

    /// <summary>
    /// Enqueues the schedule kernel, which computes the plan's parts and num_splits from the
    /// device-resident sequence lengths (the same result as <see cref="DecodeSchedule.Compute"/>).
    /// No host round-trip; graph-capturable. Lengths outside <c>[0, capacity]</c> are treated as 0
    /// and recorded in the error record.
    /// </summary>
    /// <param name="plan">The plan.</param>
    /// <param name="cacheSeqlens">int32 [b], contiguous.</param>
    /// <param name="maxBlocksPerSequence">Columns of the block table (≥ 1).</param>
    /// <param name="pageBlockSize">Tokens per page (≥ 1).</param>
    /// <param name="stream">The stream.</param>
    public void UpdatePlan(CudaDecodePlan plan, DeviceTensor<int> cacheSeqlens, int maxBlocksPerSequence, int pageBlockSize, CudaStream stream)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentNullException.ThrowIfNull(stream);
        CheckPlanUsable(plan);
        CheckStream(stream);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBlocksPerSequence, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageBlockSize, 1);
        var layout = cacheSeqlens.Layout;
        if (layout.Rank != 1 || layout.Shape[0] != plan.Batch)
        {
            throw new ArgumentException($"cacheSeqlens must have shape [{plan.Batch}] (the plan's batch); got {TensorLayout.FormatDims(layout.Shape)}.", nameof(cacheSeqlens));
        }

        if (plan.Batch > 1 && layout.Strides[0] != 1)
        {
            throw new ArgumentException($"cacheSeqlens must be contiguous; got {layout}.", nameof(cacheSeqlens));
        }

        RequireAddress(cacheSeqlens.Pointer, 4, nameof(cacheSeqlens));
        var capacity = (long)maxBlocksPerSequence * pageBlockSize;
        if (capacity > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(maxBlocksPerSequence), $"max_blocks_per_seq × page_block_size = {capacity} exceeds {int.MaxValue} tokens.");
        }

        var parameters = new ScheduleParams
        {
            CacheSeqlens = cacheSeqlens.Pointer,
            Parts = plan.Parts.Pointer,
            NumSplits = plan.NumSplits.Pointer,
            Error = plan.ErrorRecord.Pointer,
            Batch = plan.Batch,
            NumParts = plan.NumParts,
            Capacity = (int)capacity,
        };
        _schedule.Launch(
            new LaunchConfig(1, DecodeKernelGeometry.ScheduleThreads, DecodeKernelGeometry.ScheduleSharedMemoryBytes(plan.Batch), stream),
            parameters);
        plan.IsScheduled = true;
        plan.ScheduledCapacity = capacity;
        MarkPending(plan, stream);
    }

    /// <summary>
    /// Enqueues a decode: the split-KV kernel, grid (ceil(rows/64), h_kv, num_parts) × 256 threads,
    /// then the combine kernel. Asynchronous and graph-capturable unless <see cref="CheckedMode"/>
    /// is set.
    /// </summary>
    /// <typeparam name="T"><see cref="BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d], d ∈ {576, 512}; last dimension contiguous; 16-byte aligned rows.</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d]; V is its first 512 columns.</param>
    /// <param name="blockTable">int32 page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">int32 lengths, [b], contiguous; the ones <see cref="UpdatePlan"/> saw.</param>
    /// <param name="plan">A plan of this shape, scheduled with <see cref="UpdatePlan"/>.</param>
    /// <param name="output">Receives the attention output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">Receives the natural-log LSE, float [b, h_q, s_q].</param>
    /// <param name="stream">The stream.</param>
    /// <param name="options">Options; null means the defaults.</param>
    /// <exception cref="ArgumentException">A layout is invalid (see <see cref="MlaDecodeValidation"/>), or the plan (ParamName <c>plan</c>) does not match b, s_q, h_q, h_kv or the capacity it was scheduled for.</exception>
    /// <exception cref="MlaInputException"><see cref="CheckedMode"/> is set and a kernel rejected a length or a block id.</exception>
    public void Decode<T>(
        DeviceTensor<T> q,
        DeviceTensor<T> kCache,
        DeviceTensor<int> blockTable,
        DeviceTensor<int> cacheSeqlens,
        CudaDecodePlan plan,
        DeviceTensor<T> output,
        DeviceTensor<float> lse,
        CudaStream stream,
        MlaDecodeOptions? options = null)
        where T : unmanaged
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(kCache);
        ArgumentNullException.ThrowIfNull(blockTable);
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(lse);
        ArgumentNullException.ThrowIfNull(stream);
        var dtype = ElementTypes.Of<T>(nameof(q));
        options ??= new MlaDecodeOptions();
        var shape = MlaDecodeValidation.ValidateLayouts(q.Layout, kCache.Layout, blockTable.Layout, cacheSeqlens.Layout, output.Layout, lse.Layout, options);
        CheckPlanMatches(plan, shape);
        CheckStream(stream);
        RequireDeviceLayout(q, 16, nameof(q));
        RequireDeviceLayout(kCache, 16, nameof(kCache));
        RequireDeviceLayout(output, 16, nameof(output));
        RequireAddress(blockTable.Pointer, 4, nameof(blockTable));
        RequireAddress(cacheSeqlens.Pointer, 4, nameof(cacheSeqlens));
        RequireAddress(lse.Pointer, 4, nameof(lse));

        var scale = options.GetSoftmaxScale(shape.HeadDim);
        var qs = q.Layout.Strides;
        var ks = kCache.Layout.Strides;
        var os = output.Layout.Strides;
        var ls = lse.Layout.Strides;
        var decodeParams = new DecodeParams
        {
            Q = q.Pointer,
            KCache = kCache.Pointer,
            BlockTable = blockTable.Pointer,
            CacheSeqlens = cacheSeqlens.Pointer,
            Output = output.Pointer,
            Lse = lse.Pointer,
            OAccum = plan.OAccum.Pointer,
            LseAccum = plan.LseAccum.Pointer,
            Parts = plan.Parts.Pointer,
            NumSplits = plan.NumSplits.Pointer,
            Error = plan.ErrorRecord.Pointer,
            QBatchStride = qs[0],
            QSeqStride = qs[1],
            QHeadStride = qs[2],
            KBlockStride = ks[0],
            KRowStride = ks[1],
            KHeadStride = ks[2],
            BtBatchStride = blockTable.Layout.Strides[0],
            OBatchStride = os[0],
            OSeqStride = os[1],
            OHeadStride = os[2],
            LseBatchStride = ls[0],
            LseHeadStride = ls[1],
            Batch = shape.Batch,
            SQ = shape.QueryLength,
            HQ = shape.QueryHeads,
            HKv = shape.KvHeads,
            Group = shape.Group,
            Rows = shape.RowsPerKvHead,
            HeadDim = shape.HeadDim,
            PageBlockSize = shape.PageBlockSize,
            NumBlocks = shape.NumBlocks,
            MaxBlocksPerSeq = shape.MaxBlocksPerSequence,
            Causal = options.Causal ? 1 : 0,
            NumParts = plan.NumParts,
            ScaleLog2 = (float)(scale * 1.4426950408889634),
        };
        var variant = _decode[(dtype, DecodeKernelGeometry.RowsPerCta(shape.RowsPerKvHead))];
        var (grid, block) = DecodeKernelGeometry.Decode(shape, plan.NumParts, variant.RowsPerCta);
        variant.Kernel.Launch(new LaunchConfig(grid, block, variant.SharedMemoryBytes, stream), decodeParams);

        var combineParams = new CombineParams
        {
            OAccum = plan.OAccum.Pointer,
            LseAccum = plan.LseAccum.Pointer,
            NumSplits = plan.NumSplits.Pointer,
            Output = output.Pointer,
            Lse = lse.Pointer,
            OBatchStride = os[0],
            OSeqStride = os[1],
            OHeadStride = os[2],
            LseBatchStride = ls[0],
            LseHeadStride = ls[1],
            Batch = shape.Batch,
            SQ = shape.QueryLength,
            HQ = shape.QueryHeads,
            HKv = shape.KvHeads,
            Group = shape.Group,
            Rows = shape.RowsPerKvHead,
            NumParts = plan.NumParts,
        };
        var (combineGrid, combineBlock) = DecodeKernelGeometry.Combine(shape);
        _combine[dtype].Launch(new LaunchConfig(combineGrid, combineBlock, 0, stream), combineParams);

        plan.LastNumBlocks = shape.NumBlocks;
        MarkPending(plan, stream);
        if (CheckedMode && !stream.IsCapturing())
        {
            Synchronize(stream, plan);
        }
    }

    /// <summary>
    /// The synchronization point: waits for <paramref name="stream"/>, then checks the error
    /// records of the plans this decoder enqueued work for on it since their last check.
    /// </summary>
    /// <param name="stream">The stream.</param>
    /// <exception cref="MlaInputException">A kernel rejected a sequence length or a block id; the record is cleared.</exception>
    public void Synchronize(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        stream.Synchronize();
        var handle = stream.Handle;
        List<CudaDecodePlan> plans;
        lock (_pendingLock)
        {
            plans = [.. _pending.Where(p => p.PendingStream == handle)];
            foreach (var p in plans)
            {
                _pending.Remove(p);
            }
        }

        CheckRecords(plans, stream);
    }

    /// <summary>
    /// Waits for <paramref name="stream"/> and checks <paramref name="plan"/>'s error record; use
    /// it after replaying a captured graph.
    /// </summary>
    /// <param name="stream">The stream the plan's work ran on.</param>
    /// <param name="plan">The plan.</param>
    /// <exception cref="MlaInputException">A kernel rejected a sequence length or a block id; the record is cleared.</exception>
    public void Synchronize(CudaStream stream, CudaDecodePlan plan)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(plan);
        stream.Synchronize();
        lock (_pendingLock)
        {
            _pending.Remove(plan);
        }

        CheckRecords([plan], stream);
    }

    /// <summary>
    /// Decodes host tensors synchronously: validates everything (including the lengths and block
    /// ids, on the host), copies the inputs to the device, poisons the device outputs with NaN,
    /// creates and schedules a plan, decodes, copies the outputs back and checks the error record.
    /// </summary>
    /// <typeparam name="T"><see cref="BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d].</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d].</param>
    /// <param name="blockTable">Page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">Lengths, [b].</param>
    /// <param name="output">Receives the output, [b, s_q, h_q, 512]; only the view's elements are written.</param>
    /// <param name="lse">Receives the LSE, [b, h_q, s_q]; only the view's elements are written.</param>
    /// <param name="options">Options; null means the defaults.</param>
    /// <exception cref="ArgumentException">An argument is invalid; nothing has been written.</exception>
    public void DecodeHost<T>(
        HostTensor<T> q,
        HostTensor<T> kCache,
        HostTensor<int> blockTable,
        HostTensor<int> cacheSeqlens,
        HostTensor<T> output,
        HostTensor<float> lse,
        MlaDecodeOptions? options = null)
        where T : unmanaged
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(kCache);
        ArgumentNullException.ThrowIfNull(blockTable);
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(lse);
        _ = ElementTypes.Of<T>(nameof(q));
        options ??= new MlaDecodeOptions();
        var shape = MlaDecodeValidation.ValidateLayouts(q.Layout, kCache.Layout, blockTable.Layout, cacheSeqlens.Layout, output.Layout, lse.Layout, options);
        MlaDecodeValidation.ValidateSequences(shape, cacheSeqlens, blockTable);

        var stream = _hostStream;
        using var dq = Upload(q, stream);
        using var dk = Upload(kCache, stream);
        using var dTable = Upload(blockTable, stream);
        using var dSeqlens = Upload(cacheSeqlens, stream);
        var outputLayout = TensorLayout.Contiguous(shape.Batch, shape.QueryLength, shape.QueryHeads, shape.HeadDimV);
        var lseLayout = TensorLayout.Contiguous(shape.Batch, shape.QueryHeads, shape.QueryLength);
        using var dOutput = DeviceBuffer<T>.Allocate(Context, outputLayout.ElementCount);
        using var dLse = DeviceBuffer<float>.Allocate(Context, lseLayout.ElementCount);
        DeviceFill.PoisonWithNaN(dOutput, stream);
        DeviceFill.PoisonWithNaN(dLse, stream);

        using var plan = CreatePlan(shape.Batch, shape.QueryLength, shape.QueryHeads, shape.KvHeads);
        var seqlensTensor = dSeqlens.AsTensor(cacheSeqlens.Layout);
        UpdatePlan(plan, seqlensTensor, shape.MaxBlocksPerSequence, shape.PageBlockSize, stream);
        Decode(
            dq.AsTensor(q.Layout),
            dk.AsTensor(kCache.Layout),
            dTable.AsTensor(blockTable.Layout),
            seqlensTensor,
            plan,
            dOutput.AsTensor(outputLayout),
            dLse.AsTensor(lseLayout),
            stream,
            options);
        Synchronize(stream, plan);

        var outputHost = new T[outputLayout.ElementCount];
        dOutput.CopyTo(outputHost, stream);
        var lseHost = new float[lseLayout.ElementCount];
        dLse.CopyTo(lseHost, stream);
        ScatterContiguous(outputHost, output);
        ScatterContiguous(lseHost, lse);
    }

    /// <summary>Destroys the decoder's private stream. The kernels stay loaded with the context. Idempotent.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _hostStream.Dispose();
    }

    /// <summary>The split-KV variants chosen for this device, for diagnostics: (dtype, rows per CTA) → kernel, stages, shared memory.</summary>
    internal IReadOnlyDictionary<(ElementType Dtype, int Rows), DecodeVariant> DecodeVariants => _decode;

    /// <summary>Copies contiguous row-major data into the elements of a (possibly strided) host tensor.</summary>
    internal static void ScatterContiguous<TE>(ReadOnlySpan<TE> source, HostTensor<TE> destination)
        where TE : unmanaged
    {
        var layout = destination.Layout;
        var dst = destination.Span;
        if (layout.IsContiguous)
        {
            source[..(int)layout.ElementCount].CopyTo(dst);
            return;
        }

        var rank = layout.Rank;
        var shape = layout.Shape;
        var strides = layout.Strides;
        Span<long> index = stackalloc long[rank];
        long offset = 0;
        for (long i = 0; i < layout.ElementCount; i++)
        {
            dst[(int)offset] = source[(int)i];
            for (var d = rank - 1; d >= 0; d--)
            {
                index[d]++;
                offset += strides[d];
                if (index[d] < shape[d])
                {
                    break;
                }

                offset -= index[d] * strides[d];
                index[d] = 0;
            }
        }
    }

    /// <summary>
    /// The split-KV kernel for a dtype and a row count per CTA: the two-stage kernel of that size
    /// when its shared memory fits the device, else the one-stage 64-row kernel.
    /// </summary>
    private static DecodeVariant SelectVariant(KernelLibrary kernels, ElementType dtype, int rows, int optin)
    {
        var twoStage = DecodeKernelGeometry.DecodeSharedMemoryBytes(2, rows);
        if (twoStage <= optin)
        {
            return new DecodeVariant(kernels.GetKernel(DecodeKernelGeometry.DecodeModule, DecodeKernelGeometry.DecodeKernel(dtype.ShortName(), rows, 2)), rows, 2, twoStage);
        }

        var oneStage = DecodeKernelGeometry.DecodeSharedMemoryBytes(1, DecodeKernelGeometry.BlockM);
        if (oneStage <= optin)
        {
            return new DecodeVariant(kernels.GetKernel(DecodeKernelGeometry.DecodeModule, DecodeKernelGeometry.DecodeKernel(dtype.ShortName(), DecodeKernelGeometry.BlockM, 1)), DecodeKernelGeometry.BlockM, 1, oneStage);
        }

        throw new NotSupportedException(
            $"The decode kernels need {oneStage} bytes of shared memory per block; {kernels.Context.Device} allows {optin}.");
    }

    private static string Describe(CudaDecodePlan plan) =>
        string.Create(CultureInfo.InvariantCulture, $"b={plan.Batch}, s_q={plan.QueryLength}, h_q={plan.QueryHeads}, h_kv={plan.KvHeads}");

    private static void RequireAddress(ulong pointer, int alignment, string paramName)
    {
        if (pointer == 0)
        {
            throw new ArgumentException($"{paramName} has a null device address.", paramName);
        }

        if (pointer % (ulong)alignment != 0)
        {
            throw new ArgumentException($"{paramName}'s device address 0x{pointer:x} is not {alignment}-byte aligned.", paramName);
        }
    }

    private static unsafe void RequireDeviceLayout<TE>(DeviceTensor<TE> tensor, int alignment, string paramName)
        where TE : unmanaged
    {
        RequireAddress(tensor.Pointer, alignment, paramName);
        var elements = alignment / sizeof(TE);
        var layout = tensor.Layout;
        for (var d = 0; d < layout.Rank - 1; d++)
        {
            if (layout.Shape[d] > 1 && layout.Strides[d] % elements != 0)
            {
                throw new ArgumentException(
                    $"{paramName}'s stride {layout.Strides[d]} of dimension {d} is not a multiple of {elements} elements ({alignment} bytes), which the CUDA kernels' vector loads need ({layout}).",
                    paramName);
            }
        }
    }

    private static DeviceBuffer<TE> Upload<TE>(HostTensor<TE> tensor, CudaStream stream)
        where TE : unmanaged
    {
        var length = tensor.Layout.RequiredLength;
        var buffer = DeviceBuffer<TE>.Allocate(stream.Context, Math.Max(length, 1));
        try
        {
            buffer.CopyFromAsync(tensor.Span[..(int)length], stream);
            return buffer;
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    private void CheckRecords(List<CudaDecodePlan> plans, CudaStream stream)
    {
        MlaInputException? first = null;
        Span<int> record = stackalloc int[4];
        foreach (var plan in plans)
        {
            if (plan.IsDisposed)
            {
                continue;
            }

            lock (_pendingLock)
            {
                plan.PendingStream = 0;
            }

            plan.ErrorRecord.CopyTo(record, stream);
            if (record[0] == 0)
            {
                continue;
            }

            var error = BuildInputException(plan, record);
            plan.ErrorRecord.CopyFromAsync(CudaDecodePlan.CleanErrorRecord, stream);
            stream.Synchronize();
            first ??= error;
        }

        if (first is not null)
        {
            throw first;
        }
    }

    private static MlaInputException BuildInputException(CudaDecodePlan plan, ReadOnlySpan<int> record)
    {
        var flags = record[0];
        var badSeqlen = (flags & 1) != 0 && record[1] != int.MaxValue ? record[1] : -1;
        var badBlock = (flags & 2) != 0 && record[2] != int.MaxValue ? record[2] : -1;
        var capacity = plan.ScheduledCapacity;
        var parts = new List<string>();
        if ((flags & 1) != 0)
        {
            parts.Add(string.Create(
                CultureInfo.InvariantCulture,
                $"cacheSeqlens[{badSeqlen}] is outside [0, {capacity}] (max_blocks_per_seq × page_block_size); the kernels treated request {badSeqlen} as empty"));
        }

        if ((flags & 2) != 0)
        {
            var range = plan.LastNumBlocks > 0 ? string.Create(CultureInfo.InvariantCulture, $"[0, {plan.LastNumBlocks})") : "[0, num_blocks)";
            parts.Add(string.Create(
                CultureInfo.InvariantCulture,
                $"blockTable row {badBlock} holds a block id outside {range} among the pages request {badBlock} uses; the kernels read those pages as zero"));
        }

        var message = $"The CUDA decode rejected device-resident input ({Describe(plan)}): {string.Join("; ", parts)}. The outputs of the named request are not meaningful.";
        return (flags & 1) != 0
            ? new MlaInputException(badSeqlen, MlaInputError.SequenceLengthOutOfRange, message)
            : (flags & 2) != 0
                ? new MlaInputException(badBlock, MlaInputError.BlockIdOutOfRange, message)
                : new MlaInputException(-1, MlaInputError.Unknown, message + string.Create(CultureInfo.InvariantCulture, $" (error flags 0x{flags:x})"));
    }

    private void MarkPending(CudaDecodePlan plan, CudaStream stream)
    {
        lock (_pendingLock)
        {
            plan.PendingStream = stream.Handle;
            _pending.Add(plan);

            // Plans disposed without a synchronization must not be kept alive here.
            if (_pending.Count > 16)
            {
                _pending.RemoveWhere(p => p.IsDisposed);
            }
        }
    }

    private void CheckPlanUsable(CudaDecodePlan plan)
    {
        ObjectDisposedException.ThrowIf(plan.IsDisposed, plan);
        if (plan.Context.Handle != Context.Handle)
        {
            throw new ArgumentException("The plan belongs to another context.", nameof(plan));
        }
    }

    private void CheckPlanMatches(CudaDecodePlan plan, MlaDecodeShape shape)
    {
        CheckPlanUsable(plan);
        if (plan.Batch != shape.Batch || plan.QueryLength != shape.QueryLength || plan.QueryHeads != shape.QueryHeads || plan.KvHeads != shape.KvHeads)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"The plan was created for {Describe(plan)}; the tensors have b={shape.Batch}, s_q={shape.QueryLength}, h_q={shape.QueryHeads}, h_kv={shape.KvHeads}."),
                nameof(plan));
        }

        if (!plan.IsScheduled)
        {
            throw new ArgumentException("The plan has no schedule yet; call UpdatePlan first.", nameof(plan));
        }

        if (plan.ScheduledCapacity != shape.Capacity)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"The plan was scheduled for a capacity of {plan.ScheduledCapacity} tokens; the block table and cache give {shape.MaxBlocksPerSequence} × {shape.PageBlockSize} = {shape.Capacity}. Call UpdatePlan with the same max_blocks_per_seq and page_block_size."),
                nameof(plan));
        }
    }

    private void CheckStream(CudaStream stream)
    {
        if (stream.Context.Handle != Context.Handle)
        {
            throw new ArgumentException("The stream belongs to another context.", nameof(stream));
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
}

/// <summary>A split-KV kernel variant and how to launch it.</summary>
/// <param name="Kernel">The kernel.</param>
/// <param name="RowsPerCta">Query rows per CTA (grid.x = ceil(rows / this)).</param>
/// <param name="Stages">K-tile pipeline stages.</param>
/// <param name="SharedMemoryBytes">Dynamic shared memory per CTA.</param>
internal sealed record DecodeVariant(CudaKernel Kernel, int RowsPerCta, int Stages, int SharedMemoryBytes);
