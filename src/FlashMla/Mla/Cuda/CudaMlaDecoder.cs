using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Numerics;
using FlashMla.Tensors;
using Microsoft.Extensions.Logging;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// MLA decoding on a CUDA GPU with the semantics of FlashMLA's dense
/// <c>flash_mla_with_kvcache</c> (see docs/architecture.md): a schedule kernel splits the KV work
/// into parts, a split-KV kernel of one of the registered kernel paths computes partial attention
/// per part, and a combine kernel merges the partial results of split requests.
/// </summary>
/// <remarks>
/// <para>
/// <b>Use.</b> Create a plan for a shape with <see cref="CreatePlan"/>; for each step, enqueue
/// <see cref="UpdatePlan"/> (whenever the sequence lengths changed; the page geometry enters
/// here) and, for each layer, a decode on a stream. Both are asynchronous, never read device data
/// back on the host, and can be captured into a CUDA graph.
/// <see cref="DecodeHost{TQ, TKv, TOut}(HostTensor{TQ}, HostTensor{TKv}, HostTensor{int}, HostTensor{int}, HostTensor{TOut}, HostTensor{float}, MlaDecodeOptions?)"/>
/// is a synchronous convenience over host tensors.
/// </para>
/// <para>
/// <b>Kernel paths.</b> A call runs on the first registered path (<see cref="KernelPaths"/>,
/// most specialised first) that is available on the device and supports the call's shape,
/// element types and KV format; <see cref="DescribeKernel"/> says which kernel that is. A call no
/// path supports is rejected before anything is enqueued, naming the parameter.
/// </para>
/// <para>
/// <b>Guarded inputs.</b> Sequence lengths and block ids live on the device, so only the kernels
/// check them: a length outside <c>[0, max_blocks_per_seq · page_block_size]</c> or a block id of
/// a page in use outside <c>[0, num_blocks)</c> is skipped (treated as an empty request or a zero
/// page) and recorded in the plan's error record. The record is checked at the synchronization
/// point: <see cref="Synchronize(CudaStream)"/> waits for the stream and raises
/// <see cref="MlaInputException"/> naming the lowest offending request. With
/// <see cref="CheckedMode"/> set, every decode synchronizes and checks at once (except while the
/// stream is being captured). The record is cleared when the plan is created and after an error
/// was reported, so the decoder and the context stay usable.
/// </para>
/// <para>
/// <b>Observability.</b> The decoder logs to its context's <see cref="CudaContext.Logger"/>: the
/// kernel path chosen, once per distinct problem shape (Debug), and every rejected input (Warning).
/// Decode calls and rejected inputs are counted by <see cref="MlaMetrics"/>.
/// </para>
/// <para>
/// <b>Threading.</b> The decoder may be used from several threads with different plans and
/// streams; a plan must not be used by two streams at once.
/// </para>
/// </remarks>
public sealed class CudaMlaDecoder : IDisposable
{
    private readonly CudaPlanBook _plans = new();
    private readonly DecodeSharedKernels _shared;
    private readonly IDecodeKernelPath[] _paths;
    private readonly CudaStream _hostStream;
    private readonly ILogger _logger;
    private readonly KernelChoiceLog _choices;
    private int _disposed;

    /// <summary>
    /// Loads the shared kernels and every registered kernel path's kernels through the context's
    /// <see cref="KernelLibrary"/>, picks the variants that fit the device's shared memory and raises
    /// their dynamic shared memory limits.
    /// </summary>
    /// <param name="context">The context.</param>
    /// <exception cref="NotSupportedException">The device is older than compute capability 8.0, or no kernel path can run on it.</exception>
    /// <exception cref="InvalidOperationException">A shared module is not embedded for the device's target.</exception>
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
        : this(context, sharedMemoryLimitBytes, DecodeKernelPaths.All, pathsChosenByCaller: false)
    {
    }

    /// <summary>
    /// Creates a decoder that asks only the named kernel paths, in the given order, and lets each
    /// take every call it can compute (the default decoder leaves a call to a later path where that
    /// one is faster). For comparing paths on one device and for pinning one in production.
    /// </summary>
    /// <param name="context">The context.</param>
    /// <param name="kernelPaths">Path names, as <see cref="KernelPaths"/> and <see cref="DescribePaths"/> report them ("wgmma", "mma.sync").</param>
    /// <exception cref="ArgumentException">A name is not a registered path, or none is given.</exception>
    /// <exception cref="NotSupportedException">None of the named paths can run on the device.</exception>
    /// <exception cref="CudaException">JIT compilation or a driver call failed.</exception>
    public CudaMlaDecoder(CudaContext context, IEnumerable<string> kernelPaths)
        : this(
            context ?? throw new ArgumentNullException(nameof(context)),
            context.Device.MaxSharedMemoryPerBlockOptin,
            ResolvePaths(kernelPaths),
            pathsChosenByCaller: true)
    {
    }

    /// <summary>
    /// Creates a decoder that asks only <paramref name="paths"/> (in that order); tests use it to run
    /// a path that a more specialised one would otherwise take over on the device at hand.
    /// </summary>
    /// <param name="context">The context.</param>
    /// <param name="sharedMemoryLimitBytes">At most the device's opt-in limit.</param>
    /// <param name="paths">The kernel paths to ask, a subset of <see cref="DecodeKernelPaths.All"/>.</param>
    /// <param name="pathsChosenByCaller">Whether <paramref name="paths"/> is the caller's choice (see <see cref="DecodePathEnvironment.PathsChosenByCaller"/>).</param>
    internal CudaMlaDecoder(CudaContext context, int sharedMemoryLimitBytes, IReadOnlyList<DecodePathRegistration> paths, bool pathsChosenByCaller = true)
    {
        ArgumentNullException.ThrowIfNull(paths);
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(sharedMemoryLimitBytes, context.Device.MaxSharedMemoryPerBlockOptin);
        Context = context;
        _logger = context.Logger;
        _choices = new KernelChoiceLog(_logger);
        var kernels = KernelLibrary.For(context);
        _shared = new DecodeSharedKernels(kernels, sharedMemoryLimitBytes);
        var environment = new DecodePathEnvironment(kernels, sharedMemoryLimitBytes, pathsChosenByCaller);
        _paths = [.. paths.Select(r => r.Create(environment))];
        if (_paths.All(p => p.Unavailable is not null))
        {
            throw new NotSupportedException(
                $"No decode kernel path can run on {context.Device}: {string.Join("; ", _paths.Select(p => $"{p.Registration.Name}: {p.Unavailable}"))}.");
        }

        _hostStream = CudaStream.Create(context);
    }

    /// <summary>The context.</summary>
    public CudaContext Context { get; }

    /// <summary>
    /// When true, a decode waits for the stream and checks the plan's error record after every
    /// call, raising <see cref="MlaInputException"/> at once (skipped while the stream is being
    /// captured into a graph). When false (default), errors surface at
    /// <see cref="Synchronize(CudaStream)"/>.
    /// </summary>
    public bool CheckedMode { get; set; }

    /// <summary>
    /// When true (default), decodes whose requests are cut into many pieces are one kernel launch:
    /// the CTAs that computed the pieces of a split request merge them at the end of the same
    /// kernel (split_merge.cuh). The decoder does so when it expects at least
    /// <see cref="InKernelMergeMinSplits"/> pieces per request and the kernel's grid fits on the
    /// device at once (it always does with the plan's part count); other calls, and every call
    /// when false, merge with the separate combine kernel after the split-KV kernel. The results
    /// agree to within rounding, and each way is bitwise deterministic. Read when a decode is enqueued.
    /// </summary>
    public bool MergeInKernel { get; set; } = true;

    /// <summary>
    /// The fewest pieces per request for which decodes merge in the kernel (with
    /// <see cref="MergeInKernel"/>): 32. The decoder expects min(the block table's 64-key blocks,
    /// parts / b) pieces per request. With fewer, the combine kernel was measured faster on the
    /// H200 (docs/perf-notes.md, v7): the in-kernel merge waits for the slowest piece and pays a
    /// few microseconds of its own, which only pays off when the combine kernel would read many
    /// partials per row on a few SMs.
    /// </summary>
    public const int InKernelMergeMinSplits = 32;

    /// <summary>The pieces per request the decoder expects for a shape and part count: min(capacity blocks, parts / b).</summary>
    /// <param name="shape">The shape.</param>
    /// <param name="numParts">The plan's part count.</param>
    /// <returns>The expected pieces per request.</returns>
    internal static long ExpectedSplitsPerRequest(MlaDecodeShape shape, int numParts) =>
        Math.Min((shape.Capacity + DecodeSchedule.BlockSizeN - 1) / DecodeSchedule.BlockSizeN, numParts / shape.Batch);

    /// <summary>
    /// Whether a call merges its split requests in the decode kernel: <paramref name="mergeInKernel"/>,
    /// the grid fits the SM count, and at least <see cref="InKernelMergeMinSplits"/> expected pieces
    /// per request (or <paramref name="always"/>, for tests).
    /// </summary>
    /// <param name="mergeInKernel">The decoder's <see cref="MergeInKernel"/>.</param>
    /// <param name="always">Merge whenever the grid fits.</param>
    /// <param name="shape">The call's shape.</param>
    /// <param name="grid">The split-KV kernel's grid.</param>
    /// <param name="numParts">The plan's part count.</param>
    /// <param name="smCount">The device's SM count.</param>
    /// <returns>The answer.</returns>
    internal static bool MergesInKernelFor(bool mergeInKernel, bool always, MlaDecodeShape shape, Dim3 grid, int numParts, int smCount) =>
        mergeInKernel && grid.Volume <= (ulong)smCount && (always || ExpectedSplitsPerRequest(shape, numParts) >= InKernelMergeMinSplits);

    /// <summary>Tests: merge in the kernel whenever the grid fits, whatever the batch and path.</summary>
    internal bool MergeInKernelAlways { get; set; }

    /// <summary>
    /// When true (default) and the device is sm_90 or newer, decode kernels are launched with
    /// programmatic dependent launch: a decode's prologue (reading its part of the plan,
    /// prefetching its block-table row, initialising barriers) overlaps the end of the kernel
    /// before it on the stream, such as the previous layer's decode. Read when a decode is enqueued.
    /// </summary>
    public bool DependentLaunch { get; set; } = true;

    /// <summary>The registered kernel paths in the order a call asks them, and whether each can run on this device.</summary>
    public IReadOnlyList<KernelPathStatus> KernelPaths =>
        [.. _paths.Select(p => new KernelPathStatus(p.Registration.Name, p.Registration.Module, KernelLibrary.For(Context).Target, p.Unavailable))];

    /// <summary>The decode kernels' JIT info logs (registers, spills), by module.</summary>
    public string JitInfoLog =>
        string.Join(
            Environment.NewLine,
            KernelLibrary.For(Context).JitInfoLogs.Where(p => p.Key.StartsWith("decode", StringComparison.Ordinal)).Select(p => $"[{p.Key}]{Environment.NewLine}{p.Value}"));

    /// <summary>
    /// The registered kernel paths and whether their modules are built for <paramref name="target"/>,
    /// without a device (whether a path's kernels fit a device's shared memory is only known
    /// to a decoder: <see cref="KernelPaths"/>).
    /// </summary>
    /// <param name="target">A PTX target ("sm_80", "sm_90a").</param>
    /// <returns>The paths in the order a call asks them.</returns>
    public static IReadOnlyList<KernelPathStatus> DescribePaths(string target)
    {
        ArgumentNullException.ThrowIfNull(target);
        return [.. DecodeKernelPaths.All.Select(r =>
        {
            var targets = KernelLibrary.TargetsOf(r.Module);
            return new KernelPathStatus(
                r.Name,
                r.Module,
                target,
                targets.Contains(target) ? null : $"module {r.Module} is built for [{string.Join(", ", targets)}], not for {target}");
        })];
    }

    private static List<DecodePathRegistration> ResolvePaths(IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        var chosen = new List<DecodePathRegistration>();
        foreach (var name in names)
        {
            var registration = DecodeKernelPaths.All.FirstOrDefault(r => string.Equals(r.Name, name, StringComparison.Ordinal))
                ?? throw new ArgumentException(
                    $"'{name}' is not a kernel path; the paths are [{string.Join(", ", DecodeKernelPaths.All.Select(r => r.Name))}].",
                    "kernelPaths");
            if (!chosen.Contains(registration))
            {
                chosen.Add(registration);
            }
        }

        return chosen.Count > 0
            ? chosen
            : throw new ArgumentException($"Name at least one kernel path of [{string.Join(", ", DecodeKernelPaths.All.Select(r => r.Name))}].", "kernelPaths");
    }

    /// <summary>The number of parts for a shape on this device (<see cref="DecodeSchedule.PartsFor"/> with the SM count).</summary>
    /// <param name="queryLength">s_q.</param>
    /// <param name="queryHeads">h_q.</param>
    /// <param name="kvHeads">h_kv.</param>
    /// <returns>The part count.</returns>
    public int NumPartsFor(int queryLength, int queryHeads, int kvHeads) =>
        DecodeSchedule.PartsFor(Context.Device.MultiprocessorCount, queryLength, queryHeads, kvHeads);

    /// <summary>
    /// Which kernel a call of <paramref name="problem"/> runs: the first kernel path that supports
    /// it, and the variant it picks, with the grid for <see cref="NumPartsFor"/> parts.
    /// </summary>
    /// <param name="problem">The problem (from <see cref="MlaDecodeValidation.ValidateProblem{TQ, TKv, TOut}"/>, or built from a shape).</param>
    /// <returns>The kernel.</returns>
    /// <exception cref="ArgumentException">No kernel path supports the problem; ParamName names the parameter.</exception>
    public KernelPathInfo DescribeKernel(MlaDecodeProblem problem)
    {
        ThrowIfDisposed();
        var shape = problem.Shape;
        var parts = NumPartsFor(shape.QueryLength, shape.QueryHeads, shape.KvHeads);
        var info = Select(problem).Describe(problem, parts);
        return info with { MergesInKernel = MergesInKernelFor(MergeInKernel, MergeInKernelAlways, shape, info.Grid, parts, Context.Device.MultiprocessorCount) };
    }

    /// <summary>
    /// Allocates the workspace of decodes of one shape: parts [num_parts], num_splits [b+1], the
    /// error record (cleared), o_accum float [(b+num_parts)·h_kv·rows8·512] (rows8: rows rounded up to 8) and lse_accum float
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
        try
        {
            MlaDecodePlan.ValidateDimensions(batch, queryLength, queryHeads, kvHeads);
            if (batch > _shared.MaxBatch)
            {
                throw new ArgumentOutOfRangeException(nameof(batch), batch, $"The schedule kernel handles at most {_shared.MaxBatch} requests on {Context.Device} ({_shared.ScheduleLimitText}).");
            }
        }
        catch (ArgumentException e) when (Rejected(e))
        {
            throw; // not reached: the filter logs, counts and declines
        }

        var plan = new CudaDecodePlan(Context, _plans, batch, queryLength, queryHeads, kvHeads, NumPartsFor(queryLength, queryHeads, kvHeads));
        _plans.Add(plan);
        return plan;
    }

    /// <summary>
    /// Enqueues the schedule kernel, which computes the plan's parts and num_splits from the
    /// device-resident sequence lengths (the same result as <see cref="DecodeSchedule.Compute"/>),
    /// and records the page geometry the step's decodes must use. No host round-trip;
    /// graph-capturable. Lengths outside <c>[0, capacity]</c> are treated as 0 and recorded in the
    /// error record.
    /// </summary>
    /// <param name="plan">The plan.</param>
    /// <param name="cacheSeqlens">int32 [b], contiguous.</param>
    /// <param name="maxBlocksPerSequence">Columns of the block table (≥ 1).</param>
    /// <param name="pageBlockSize">Tokens per page (≥ 1).</param>
    /// <param name="stream">The stream.</param>
    public void UpdatePlan(CudaDecodePlan plan, DeviceTensor<int> cacheSeqlens, int maxBlocksPerSequence, int pageBlockSize, CudaStream stream)
    {
        ThrowIfDisposed();
        PlanGeometry geometry;
        try
        {
            ArgumentNullException.ThrowIfNull(plan);
            ArgumentNullException.ThrowIfNull(cacheSeqlens);
            ArgumentNullException.ThrowIfNull(stream);
            CudaDecodeValidation.RequirePlan(plan, Context, _plans);
            CudaDecodeValidation.RequireContext(stream, Context);
            geometry = PlanGeometry.Validate(maxBlocksPerSequence, pageBlockSize);
            CudaDecodeValidation.RequireSeqlens(cacheSeqlens, plan.Batch);
        }
        catch (ArgumentException e) when (Rejected(e))
        {
            throw; // not reached: the filter logs, counts and declines
        }

        _shared.EnqueueSchedule(plan, cacheSeqlens.Pointer, (int)geometry.Capacity, stream);
        _plans.Updated(plan, geometry, stream);
    }

    /// <summary>
    /// Enqueues a decode: the split-KV kernel of the first kernel path that supports the call,
    /// then the combine kernel. Asynchronous and graph-capturable unless <see cref="CheckedMode"/>
    /// is set.
    /// </summary>
    /// <typeparam name="TQ">q's element type: <see cref="BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <typeparam name="TKv">The cache's storage element type.</typeparam>
    /// <typeparam name="TOut">The output's element type.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d], d ∈ {576, 512}; last dimension contiguous; 16-byte aligned rows.</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d], and its format; V is its first 512 columns.</param>
    /// <param name="blockTable">int32 page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">int32 lengths, [b], contiguous; the ones <see cref="UpdatePlan"/> saw.</param>
    /// <param name="plan">A plan of this shape, updated with <see cref="UpdatePlan"/> for the cache's page size and the block table's width.</param>
    /// <param name="output">Receives the attention output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">Receives the natural-log LSE, float [b, h_q, s_q].</param>
    /// <param name="stream">The stream.</param>
    /// <param name="options">Options; null means the defaults.</param>
    /// <exception cref="ArgumentException">A layout is invalid (see <see cref="MlaDecodeValidation"/>), no kernel path supports the element types or format (ParamName names the parameter), or the plan (ParamName <c>plan</c>) does not match b, s_q, h_q, h_kv or the page geometry it was updated for.</exception>
    /// <exception cref="MlaInputException"><see cref="CheckedMode"/> is set and a kernel rejected a length or a block id.</exception>
    public void Decode<TQ, TKv, TOut>(
        DeviceTensor<TQ> q,
        DeviceKvCache<TKv> kCache,
        DeviceTensor<int> blockTable,
        DeviceTensor<int> cacheSeqlens,
        CudaDecodePlan plan,
        DeviceTensor<TOut> output,
        DeviceTensor<float> lse,
        CudaStream stream,
        MlaDecodeOptions? options = null)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        ThrowIfDisposed();
        DecodeLaunch launch;
        IDecodeKernelPath path;
        try
        {
            ArgumentNullException.ThrowIfNull(kCache);
            launch = Prepare(q, kCache.Blocks, kCache.Format, blockTable, cacheSeqlens, plan, output, lse, stream, options, out path);
        }
        catch (ArgumentException e) when (Rejected(e))
        {
            throw; // not reached: the filter logs, counts and declines
        }

        path.Enqueue(launch);
        if (!launch.MergeInKernel)
        {
            _shared.EnqueueCombine(launch);
        }

        _plans.Decoded(plan, launch.Problem.Shape.NumBlocks, stream);
        MlaMetrics.RecordDecode(MlaMetrics.CudaBackend, path.Registration.Name);
        if (CheckedMode && !stream.IsCapturing())
        {
            Synchronize(stream, plan);
        }
    }

    /// <summary>Enqueues a decode of a dense cache (its format from <typeparamref name="TKv"/> and its last dimension).</summary>
    /// <typeparam name="TQ">q's element type.</typeparam>
    /// <typeparam name="TKv">The cache's element type.</typeparam>
    /// <typeparam name="TOut">The output's element type.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d].</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d].</param>
    /// <param name="blockTable">int32 page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">int32 lengths, [b].</param>
    /// <param name="plan">The plan.</param>
    /// <param name="output">Receives the output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">Receives the LSE, float [b, h_q, s_q].</param>
    /// <param name="stream">The stream.</param>
    /// <param name="options">Options; null means the defaults.</param>
    public void Decode<TQ, TKv, TOut>(
        DeviceTensor<TQ> q,
        DeviceTensor<TKv> kCache,
        DeviceTensor<int> blockTable,
        DeviceTensor<int> cacheSeqlens,
        CudaDecodePlan plan,
        DeviceTensor<TOut> output,
        DeviceTensor<float> lse,
        CudaStream stream,
        MlaDecodeOptions? options = null)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(kCache);
        Decode(q, new DeviceKvCache<TKv>(kCache, MlaDecodeValidation.DenseFormat<TQ, TKv>(kCache.Layout)), blockTable, cacheSeqlens, plan, output, lse, stream, options);
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
        try
        {
            _plans.Check(stream);
        }
        catch (MlaInputException e) when (Rejected(e))
        {
            throw; // not reached: the filter logs, counts and declines
        }
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
        try
        {
            _plans.Check(stream, plan);
        }
        catch (MlaInputException e) when (Rejected(e))
        {
            throw; // not reached: the filter logs, counts and declines
        }
    }

    /// <summary>
    /// Decodes host tensors synchronously: validates everything (including the lengths and block
    /// ids, on the host), copies the inputs to the device, poisons the device outputs with NaN,
    /// creates and updates a plan, decodes, copies the outputs back and checks the error record.
    /// </summary>
    /// <typeparam name="TQ">q's element type.</typeparam>
    /// <typeparam name="TKv">The cache's storage element type.</typeparam>
    /// <typeparam name="TOut">The output's element type.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d].</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d], and its format.</param>
    /// <param name="blockTable">Page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">Lengths, [b].</param>
    /// <param name="output">Receives the output, [b, s_q, h_q, 512]; only the view's elements are written.</param>
    /// <param name="lse">Receives the LSE, [b, h_q, s_q]; only the view's elements are written.</param>
    /// <param name="options">Options; null means the defaults.</param>
    /// <exception cref="ArgumentException">An argument is invalid; nothing has been written.</exception>
    public void DecodeHost<TQ, TKv, TOut>(
        HostTensor<TQ> q,
        HostKvCache<TKv> kCache,
        HostTensor<int> blockTable,
        HostTensor<int> cacheSeqlens,
        HostTensor<TOut> output,
        HostTensor<float> lse,
        MlaDecodeOptions? options = null)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        ThrowIfDisposed();
        options ??= new MlaDecodeOptions();
        MlaDecodeShape shape;
        try
        {
            ArgumentNullException.ThrowIfNull(kCache);
            var problem = MlaDecodeValidation.ValidateProblem<TQ, TKv, TOut>(q, kCache.Blocks, kCache.Format, blockTable, cacheSeqlens, output, lse, options);
            shape = problem.Shape;
            _ = Select(problem);
            MlaDecodeValidation.ValidateSequences(shape, cacheSeqlens, blockTable);
        }
        catch (ArgumentException e) when (Rejected(e))
        {
            throw; // not reached: the filter logs, counts and declines
        }

        var stream = _hostStream;
        using var dq = HostTransfers.Upload(q, stream);
        using var dk = HostTransfers.Upload(kCache.Blocks, stream);
        using var dTable = HostTransfers.Upload(blockTable, stream);
        using var dSeqlens = HostTransfers.Upload(cacheSeqlens, stream);
        var outputLayout = TensorLayout.Contiguous(shape.Batch, shape.QueryLength, shape.QueryHeads, shape.HeadDimV);
        var lseLayout = TensorLayout.Contiguous(shape.Batch, shape.QueryHeads, shape.QueryLength);
        using var dOutput = DeviceBuffer<TOut>.Allocate(Context, outputLayout.ElementCount);
        using var dLse = DeviceBuffer<float>.Allocate(Context, lseLayout.ElementCount);
        DeviceFill.PoisonWithNaN(dOutput, stream);
        DeviceFill.PoisonWithNaN(dLse, stream);

        using var plan = CreatePlan(shape.Batch, shape.QueryLength, shape.QueryHeads, shape.KvHeads);
        var seqlensTensor = dSeqlens.AsTensor(cacheSeqlens.Layout);
        UpdatePlan(plan, seqlensTensor, shape.MaxBlocksPerSequence, shape.PageBlockSize, stream);
        Decode(
            dq.AsTensor(q.Layout),
            new DeviceKvCache<TKv>(dk.AsTensor(kCache.Blocks.Layout), kCache.Format),
            dTable.AsTensor(blockTable.Layout),
            seqlensTensor,
            plan,
            dOutput.AsTensor(outputLayout),
            dLse.AsTensor(lseLayout),
            stream,
            options);
        Synchronize(stream, plan);

        var outputHost = new TOut[outputLayout.ElementCount];
        dOutput.CopyTo(outputHost, stream);
        var lseHost = new float[lseLayout.ElementCount];
        dLse.CopyTo(lseHost, stream);
        HostTransfers.ScatterContiguous(outputHost, output);
        HostTransfers.ScatterContiguous(lseHost, lse);
    }

    /// <summary>Decodes dense host tensors synchronously (see the <see cref="HostKvCache{T}"/> overload).</summary>
    /// <typeparam name="TQ">q's element type.</typeparam>
    /// <typeparam name="TKv">The cache's element type.</typeparam>
    /// <typeparam name="TOut">The output's element type.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d].</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d].</param>
    /// <param name="blockTable">Page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">Lengths, [b].</param>
    /// <param name="output">Receives the output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">Receives the LSE, [b, h_q, s_q].</param>
    /// <param name="options">Options; null means the defaults.</param>
    public void DecodeHost<TQ, TKv, TOut>(
        HostTensor<TQ> q,
        HostTensor<TKv> kCache,
        HostTensor<int> blockTable,
        HostTensor<int> cacheSeqlens,
        HostTensor<TOut> output,
        HostTensor<float> lse,
        MlaDecodeOptions? options = null)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(kCache);
        DecodeHost(q, new HostKvCache<TKv>(kCache, MlaDecodeValidation.DenseFormat<TQ, TKv>(kCache.Layout)), blockTable, cacheSeqlens, output, lse, options);
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

    /// <summary>Validates a decode call, checks the plan and picks the kernel path.</summary>
    private DecodeLaunch Prepare<TQ, TKv, TOut>(
        DeviceTensor<TQ> q,
        DeviceTensor<TKv> kCache,
        KvCacheFormat kvFormat,
        DeviceTensor<int> blockTable,
        DeviceTensor<int> cacheSeqlens,
        CudaDecodePlan plan,
        DeviceTensor<TOut> output,
        DeviceTensor<float> lse,
        CudaStream stream,
        MlaDecodeOptions? options,
        out IDecodeKernelPath path)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        options ??= new MlaDecodeOptions();
        var problem = MlaDecodeValidation.ValidateProblem<TQ, TKv, TOut>(q, kCache, kvFormat, blockTable, cacheSeqlens, output, lse, options);
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(stream);
        CudaDecodeValidation.RequirePlan(plan, Context, _plans);
        plan.CheckMatches(problem.Shape);
        CudaDecodeValidation.RequireContext(stream, Context);
        CudaDecodeValidation.RequireDeviceLayout(q.Pointer, q.Layout, problem.QueryType.SizeInBytes, CudaDecodeValidation.VectorBytes, nameof(q));
        CudaDecodeValidation.RequireDeviceLayout(kCache.Pointer, kCache.Layout, kvFormat.ElementType.SizeInBytes, CudaDecodeValidation.VectorBytes, nameof(kCache));
        CudaDecodeValidation.RequireDeviceLayout(output.Pointer, output.Layout, problem.OutputType.SizeInBytes, CudaDecodeValidation.VectorBytes, nameof(output));
        CudaDecodeValidation.RequireAddress(blockTable.Pointer, sizeof(int), nameof(blockTable));
        CudaDecodeValidation.RequireAddress(cacheSeqlens.Pointer, sizeof(int), nameof(cacheSeqlens));
        CudaDecodeValidation.RequireAddress(lse.Pointer, sizeof(float), nameof(lse));
        path = Select(problem);
        _choices.Chosen(problem, path, plan.NumParts);
        var grid = path.Describe(problem, plan.NumParts).Grid;
        return new DecodeLaunch
        {
            MergeInKernel = MergesInKernelFor(MergeInKernel, MergeInKernelAlways, problem.Shape, grid, plan.NumParts, Context.Device.MultiprocessorCount),
            DependentLaunch = DependentLaunch && Context.Device.ComputeCapability.Major >= 9,
            Problem = problem,
            Q = q.Pointer,
            QLayout = q.Layout,
            KCache = kCache.Pointer,
            BlockTable = blockTable.Pointer,
            BlockTableLayout = blockTable.Layout,
            CacheSeqlens = cacheSeqlens.Pointer,
            Output = output.Pointer,
            OutputLayout = output.Layout,
            Lse = lse.Pointer,
            LseLayout = lse.Layout,
            Plan = plan,
            Causal = options.Causal,
            SoftmaxScale = options.GetSoftmaxScale(problem.Shape.HeadDim),
            Stream = stream,
        };
    }

    /// <summary>The first available path that supports the problem; otherwise an exception naming the parameter.</summary>
    private IDecodeKernelPath Select(in MlaDecodeProblem problem)
    {
        KernelSupport last = default;
        foreach (var path in _paths)
        {
            if (path.Unavailable is not null)
            {
                continue;
            }

            var support = path.Supports(problem);
            if (support.IsSupported)
            {
                if (!_shared.HasCombine(problem.OutputType))
                {
                    throw new ArgumentException($"No combine kernel writes {problem.OutputType.ShortName()} outputs.", "output");
                }

                return path;
            }

            last = support;
        }

        var local = problem;
        var reasons = string.Join("; ", _paths.Select(p => $"{p.Registration.Name}: {p.Unavailable ?? p.Supports(local).Reason}"));
        throw new ArgumentException($"No decode kernel path on {Context.Device} supports this call: {reasons}.", last.ParamName ?? "q");
    }

    /// <summary>Logs and counts a rejected input; false, so that the exception filter lets it propagate unchanged.</summary>
    private bool Rejected(Exception e) => MlaRejections.Report(_logger, MlaMetrics.CudaBackend, e);

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
}
