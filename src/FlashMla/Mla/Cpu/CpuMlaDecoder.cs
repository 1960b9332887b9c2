using System.Runtime.Intrinsics;
using FlashMla.Numerics;
using FlashMla.Tensors;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FlashMla.Mla.Cpu;

/// <summary>
/// A multi-threaded CPU implementation of MLA dense decode with the semantics of FlashMLA's
/// <c>flash_mla_with_kvcache</c>. It follows the GPU's split-KV structure (schedule, partial results,
/// combine) so that it doubles as an executable model of the CUDA backend.
/// </summary>
/// <remarks>
/// Accumulation is in float32 with an online softmax. Parts of the <see cref="DecodeSchedule"/> run
/// in parallel, one task per (part, KV head). An uncut request piece writes the final output and LSE;
/// a cut piece writes a normalised float32 partial output and a base-2 LSE to a workspace, and a
/// combine step merges the pieces of each split request with weights
/// <c>exp2(lse_i − lse_max) / Σ exp2(lse_j − lse_max)</c>.
/// </remarks>
public sealed partial class CpuMlaDecoder
{
    /// <summary>The value head dimension: the columns of the output and of each partial result.</summary>
    internal const int ValueDim = MlaDecodeValidation.SupportedHeadDimV;

    private readonly int _vectorBits;
    private CpuDecodeWorkspace? _workspace;

    /// <summary>Creates a decoder.</summary>
    /// <param name="maxDegreeOfParallelism">The maximum number of threads, or −1 for all processors.</param>
    /// <exception cref="ArgumentOutOfRangeException">The value is 0 or less than −1.</exception>
    public CpuMlaDecoder(int maxDegreeOfParallelism = -1)
    {
        if (maxDegreeOfParallelism == 0 || maxDegreeOfParallelism < -1)
        {
            throw new ArgumentOutOfRangeException(
                nameof(maxDegreeOfParallelism),
                maxDegreeOfParallelism,
                "The degree of parallelism must be −1 (all processors) or at least 1.");
        }

        MaxDegreeOfParallelism = maxDegreeOfParallelism;
        _vectorBits = Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 128;
    }

    /// <summary>Creates a decoder whose tile kernels use vectors of <paramref name="vectorBits"/> bits
    /// (emulated where the hardware lacks them), so that every width can be tested on any machine.</summary>
    internal CpuMlaDecoder(int maxDegreeOfParallelism, int vectorBits)
        : this(maxDegreeOfParallelism)
    {
        if (vectorBits is not (128 or 256 or 512))
        {
            throw new ArgumentOutOfRangeException(nameof(vectorBits), vectorBits, "The vector width must be 128, 256 or 512 bits.");
        }

        _vectorBits = vectorBits;
    }

    /// <summary>The SIMD width of the tile kernels, in bits: the widest the hardware accelerates (512, 256 or 128).</summary>
    internal int VectorBits => _vectorBits;

    /// <summary>The maximum number of threads (−1: all processors).</summary>
    public int MaxDegreeOfParallelism { get; }

    /// <summary>
    /// Receives every rejected input (Warning: the parameter and the reason); the default,
    /// <see cref="NullLogger.Instance"/>, logs nothing. Decode calls and rejected inputs are also
    /// counted by <see cref="MlaMetrics"/>.
    /// </summary>
    public ILogger Logger { get; init; } = NullLogger.Instance;

    private int EffectiveParallelism => MaxDegreeOfParallelism > 0 ? MaxDegreeOfParallelism : Environment.ProcessorCount;

    /// <summary>
    /// Creates a plan for decodes of one shape. Its number of parts keeps all threads busy (about
    /// four tasks per thread over parts × KV heads). Call <see cref="UpdatePlan(CpuDecodePlan, HostTensor{int}, int, int)"/> before decoding.
    /// </summary>
    /// <param name="batch">b (≥ 1).</param>
    /// <param name="queryLength">s_q (≥ 1).</param>
    /// <param name="queryHeads">h_q (≥ 1).</param>
    /// <param name="kvHeads">h_kv (≥ 1, divides h_q).</param>
    /// <returns>The plan.</returns>
    public CpuDecodePlan CreatePlan(int batch, int queryLength, int queryHeads, int kvHeads)
    {
        try
        {
            MlaDecodePlan.ValidateDimensions(batch, queryLength, queryHeads, kvHeads);
            return new CpuDecodePlan(batch, queryLength, queryHeads, kvHeads, PartsForCpu(kvHeads));
        }
        catch (ArgumentException e) when (Rejected(e))
        {
            throw; // not reached: the filter logs, counts and declines
        }
    }

    /// <summary>
    /// Computes the plan's schedule for a step's sequence lengths and records the page geometry
    /// that the step's decodes must use.
    /// </summary>
    /// <param name="plan">The plan.</param>
    /// <param name="cacheSeqlens">Sequence lengths, [b] (any stride), each in <c>[0, max_blocks_per_seq · page_block_size]</c>.</param>
    /// <param name="maxBlocksPerSequence">Columns of the block table (≥ 1).</param>
    /// <param name="pageBlockSize">Tokens per page (≥ 1).</param>
    /// <exception cref="ArgumentException">A length is out of range, or the tensor does not have the plan's batch.</exception>
    public void UpdatePlan(CpuDecodePlan plan, HostTensor<int> cacheSeqlens, int maxBlocksPerSequence, int pageBlockSize)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(plan);
            ArgumentNullException.ThrowIfNull(cacheSeqlens);
            var geometry = PlanGeometry.Validate(maxBlocksPerSequence, pageBlockSize);
            var layout = cacheSeqlens.Layout;
            if (layout.Rank != 1 || layout.Shape[0] != plan.Batch)
            {
                throw new ArgumentException($"cacheSeqlens must have shape [{plan.Batch}] (the plan's batch); got {TensorLayout.FormatDims(layout.Shape)}.", nameof(cacheSeqlens));
            }

            var seqlens = ReadSeqlens(cacheSeqlens);
            MlaDecodeValidation.ValidateSequenceLengths(seqlens, geometry.MaxBlocksPerSequence, geometry.PageBlockSize);
            plan.Update(geometry, DecodeSchedule.Compute(seqlens, plan.NumParts));
        }
        catch (ArgumentException e) when (Rejected(e))
        {
            throw; // not reached: the filter logs, counts and declines
        }
    }

    /// <summary>
    /// Decodes one layer with a plan updated for these sequence lengths and this page geometry.
    /// </summary>
    /// <typeparam name="TQ">q's element type: <see cref="BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <typeparam name="TKv">The cache's storage element type.</typeparam>
    /// <typeparam name="TOut">The output's element type: <see cref="BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d], d ∈ {576, 512}; the last dimension contiguous.</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d], and its format; V is the first 512 columns.</param>
    /// <param name="blockTable">Page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">Sequence lengths, [b]; the ones <see cref="UpdatePlan(CpuDecodePlan, HostTensor{int}, int, int)"/> saw.</param>
    /// <param name="plan">The plan.</param>
    /// <param name="output">Receives the attention output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">Receives the natural-log log-sum-exp of the scaled scores, [b, h_q, s_q].</param>
    /// <param name="options">Options; null means the defaults.</param>
    /// <exception cref="ArgumentException">An argument is invalid (see <see cref="MlaDecodeValidation"/>), or the plan does not fit the call (ParamName <c>plan</c>); nothing has been written.</exception>
    public void Decode<TQ, TKv, TOut>(
        HostTensor<TQ> q,
        HostKvCache<TKv> kCache,
        HostTensor<int> blockTable,
        HostTensor<int> cacheSeqlens,
        CpuDecodePlan plan,
        HostTensor<TOut> output,
        HostTensor<float> lse,
        MlaDecodeOptions? options = null)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        try
        {
            ArgumentNullException.ThrowIfNull(kCache);
            ArgumentNullException.ThrowIfNull(plan);
            var (problem, resolved) = Validate(q, kCache.Blocks, kCache.Format, blockTable, cacheSeqlens, output, lse, options);
            plan.CheckMatches(problem.Shape);
            MlaDecodeValidation.ValidateSequences(problem.Shape, cacheSeqlens, blockTable);
            Run(problem, resolved, q, kCache.Blocks, blockTable, cacheSeqlens, plan.Schedule!, nameof(plan), output, lse);
        }
        catch (ArgumentException e) when (Rejected(e))
        {
            throw; // not reached: the filter logs, counts and declines
        }
    }

    /// <summary>Decodes one layer of a dense cache (its format from <typeparamref name="TKv"/> and its last dimension) with a plan.</summary>
    /// <typeparam name="TQ">q's element type.</typeparam>
    /// <typeparam name="TKv">The cache's element type.</typeparam>
    /// <typeparam name="TOut">The output's element type.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d].</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d].</param>
    /// <param name="blockTable">Page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">Sequence lengths, [b].</param>
    /// <param name="plan">The plan.</param>
    /// <param name="output">Receives the output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">Receives the LSE, [b, h_q, s_q].</param>
    /// <param name="options">Options; null means the defaults.</param>
    public void Decode<TQ, TKv, TOut>(
        HostTensor<TQ> q,
        HostTensor<TKv> kCache,
        HostTensor<int> blockTable,
        HostTensor<int> cacheSeqlens,
        CpuDecodePlan plan,
        HostTensor<TOut> output,
        HostTensor<float> lse,
        MlaDecodeOptions? options = null)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(kCache);
        Decode(q, new HostKvCache<TKv>(kCache, MlaDecodeValidation.DenseFormat<TQ, TKv>(kCache.Layout)), blockTable, cacheSeqlens, plan, output, lse, options);
    }

    /// <summary>
    /// Computes a schedule for this decoder: <see cref="DecodeSchedule.Compute"/> with a number of
    /// parts that keeps all threads busy (about four tasks per thread over parts × KV heads).
    /// </summary>
    /// <param name="cacheSeqlens">Sequence lengths, [b] (any stride), each ≥ 0.</param>
    /// <param name="queryLength">s_q (≥ 1).</param>
    /// <param name="queryHeads">h_q (≥ 1).</param>
    /// <param name="kvHeads">h_kv (≥ 1, divides h_q).</param>
    /// <returns>The schedule.</returns>
    /// <exception cref="ArgumentException">A tensor or a count is invalid.</exception>
    public DecodeSchedule CreateSchedule(HostTensor<int> cacheSeqlens, int queryLength, int queryHeads, int kvHeads)
    {
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentOutOfRangeException.ThrowIfLessThan(queryLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(queryHeads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvHeads, 1);
        if (queryHeads % kvHeads != 0)
        {
            throw new ArgumentException($"h_q = {queryHeads} must be a multiple of h_kv = {kvHeads}.", nameof(kvHeads));
        }

        var layout = cacheSeqlens.Layout;
        if (layout.Rank != 1 || layout.Shape[0] < 1)
        {
            throw new ArgumentException(
                $"cacheSeqlens must have shape [batch] with batch ≥ 1; got {layout}.", nameof(cacheSeqlens));
        }

        var seqlens = ReadSeqlens(cacheSeqlens);
        return DecodeSchedule.Compute(seqlens, PartsForCpu(kvHeads));
    }

    /// <summary>
    /// Decodes in one call: validates everything, computes a schedule for these lengths and decodes
    /// (a plan created, updated and used once).
    /// </summary>
    /// <typeparam name="TQ">q's element type: <see cref="BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <typeparam name="TKv">The cache's element type.</typeparam>
    /// <typeparam name="TOut">The output's element type.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d], d ∈ {576, 512}; the last dimension contiguous.</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d]; V is its first 512 columns.</param>
    /// <param name="blockTable">Page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">Sequence lengths, [b].</param>
    /// <param name="output">Receives the attention output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">Receives the natural-log log-sum-exp of the scaled scores, [b, h_q, s_q].</param>
    /// <param name="options">Options; null means the defaults.</param>
    /// <exception cref="ArgumentException">An argument is invalid (see <see cref="MlaDecodeValidation"/>);
    /// nothing has been written.</exception>
    public void Decode<TQ, TKv, TOut>(
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
        => DecodeWithSchedule(q, kCache, blockTable, cacheSeqlens, null, output, lse, options);

    /// <summary>
    /// Decodes with a given schedule, which must have been computed for the same sequence lengths.
    /// </summary>
    /// <typeparam name="TQ">q's element type: <see cref="BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <typeparam name="TKv">The cache's element type.</typeparam>
    /// <typeparam name="TOut">The output's element type.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d], d ∈ {576, 512}; the last dimension contiguous.</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d]; V is its first 512 columns.</param>
    /// <param name="blockTable">Page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">Sequence lengths, [b].</param>
    /// <param name="schedule">The work schedule for these sequence lengths (any number of parts).</param>
    /// <param name="output">Receives the attention output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">Receives the natural-log log-sum-exp of the scaled scores, [b, h_q, s_q].</param>
    /// <param name="options">Options; null means the defaults.</param>
    /// <exception cref="ArgumentException">An argument is invalid (see <see cref="MlaDecodeValidation"/>),
    /// or the schedule does not match the batch or the lengths (ParamName <c>schedule</c>); nothing
    /// has been written.</exception>
    public void Decode<TQ, TKv, TOut>(
        HostTensor<TQ> q,
        HostTensor<TKv> kCache,
        HostTensor<int> blockTable,
        HostTensor<int> cacheSeqlens,
        DecodeSchedule schedule,
        HostTensor<TOut> output,
        HostTensor<float> lse,
        MlaDecodeOptions? options = null)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        ArgumentNullException.ThrowIfNull(schedule);
        DecodeWithSchedule(q, kCache, blockTable, cacheSeqlens, schedule, output, lse, options);
    }

    private static (MlaDecodeProblem Problem, MlaDecodeOptions Options) Validate<TQ, TKv, TOut>(
        HostTensor<TQ> q,
        HostTensor<TKv> kCache,
        KvCacheFormat kvFormat,
        HostTensor<int> blockTable,
        HostTensor<int> cacheSeqlens,
        HostTensor<TOut> output,
        HostTensor<float> lse,
        MlaDecodeOptions? options)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        options ??= new MlaDecodeOptions();
        return (MlaDecodeValidation.ValidateProblem<TQ, TKv, TOut>(q, kCache, kvFormat, blockTable, cacheSeqlens, output, lse, options), options);
    }

    /// <summary>Checks that a schedule covers the batch (ParamName <paramref name="paramName"/>).</summary>
    private static void CheckScheduleBatch(DecodeSchedule schedule, MlaDecodeShape shape, string paramName)
    {
        if (schedule.NumSplits.Length != shape.Batch + 1)
        {
            throw new ArgumentException(
                $"The schedule was computed for {schedule.NumSplits.Length - 1} request(s) (num_splits has {schedule.NumSplits.Length} entries) but the batch has {shape.Batch} (expected {shape.Batch + 1} entries).",
                paramName);
        }
    }

    /// <summary>Checks that a schedule covers the batch and these lengths (ParamName <paramref name="paramName"/>).</summary>
    private static void CheckScheduleMatches(DecodeSchedule schedule, MlaDecodeShape shape, ReadOnlySpan<int> seqlens, string paramName)
    {
        CheckScheduleBatch(schedule, shape, paramName);
        var blocks = schedule.BlockCounts;
        for (var i = 0; i < shape.Batch; i++)
        {
            var expected = (seqlens[i] + DecodeSchedule.BlockSizeN - 1) / DecodeSchedule.BlockSizeN;
            if (blocks[i] != expected)
            {
                throw new ArgumentException(
                    $"The schedule does not match cacheSeqlens: it covers {blocks[i]} block(s) of {DecodeSchedule.BlockSizeN} tokens for request {i}, but cacheSeqlens[{i}] = {seqlens[i]} needs {expected}.",
                    paramName);
            }
        }
    }

    private void DecodeWithSchedule<TQ, TKv, TOut>(
        HostTensor<TQ> q,
        HostTensor<TKv> kCache,
        HostTensor<int> blockTable,
        HostTensor<int> cacheSeqlens,
        DecodeSchedule? schedule,
        HostTensor<TOut> output,
        HostTensor<float> lse,
        MlaDecodeOptions? options)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        try
        {
            ArgumentNullException.ThrowIfNull(q);
            ArgumentNullException.ThrowIfNull(kCache);
            var (problem, resolved) = Validate(q, kCache, MlaDecodeValidation.DenseFormat<TQ, TKv>(kCache.Layout), blockTable, cacheSeqlens, output, lse, options);
            if (schedule is not null)
            {
                CheckScheduleBatch(schedule, problem.Shape, nameof(schedule));
            }

            MlaDecodeValidation.ValidateSequences(problem.Shape, cacheSeqlens, blockTable);
            schedule ??= DecodeSchedule.Compute(ReadSeqlens(cacheSeqlens), PartsForCpu(problem.Shape.KvHeads));
            Run(problem, resolved, q, kCache, blockTable, cacheSeqlens, schedule, nameof(schedule), output, lse);
        }
        catch (ArgumentException e) when (Rejected(e))
        {
            throw; // not reached: the filter logs, counts and declines
        }
    }

    private void Run<TQ, TKv, TOut>(
        MlaDecodeProblem problem,
        MlaDecodeOptions options,
        HostTensor<TQ> q,
        HostTensor<TKv> kCache,
        HostTensor<int> blockTable,
        HostTensor<int> cacheSeqlens,
        DecodeSchedule schedule,
        string scheduleParam,
        HostTensor<TOut> output,
        HostTensor<float> lse)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        // One workspace per decoder, reused by every call; a call that finds it in use (the same
        // decoder on another thread) works in a workspace of its own.
        var workspace = Interlocked.Exchange(ref _workspace, null) ?? new CpuDecodeWorkspace(MaxDegreeOfParallelism, _vectorBits);
        try
        {
            var seqlens = workspace.TakeSeqlens(problem.Shape.Batch);
            ReadSeqlens(cacheSeqlens, seqlens);
            CheckScheduleMatches(schedule, problem.Shape, seqlens, scheduleParam);
            workspace.RunFor<TQ, TKv, TOut>().Execute(problem.Shape, options, q, kCache, blockTable, schedule, output, lse);
        }
        finally
        {
            _workspace = workspace;
        }

        MlaMetrics.RecordDecode(MlaMetrics.CpuBackend, MlaMetrics.CpuKernelPath);
    }

    /// <summary>Logs and counts a rejected input; false, so that the exception filter lets it propagate unchanged.</summary>
    private bool Rejected(Exception e) => MlaRejections.Report(Logger, MlaMetrics.CpuBackend, e);

    private int PartsForCpu(int kvHeads)
    {
        var tasks = 4 * EffectiveParallelism;
        return Math.Clamp((tasks + kvHeads - 1) / kvHeads, 1, 1024);
    }

    private static int[] ReadSeqlens(HostTensor<int> cacheSeqlens)
    {
        var result = new int[(int)cacheSeqlens.Layout.Shape[0]];
        ReadSeqlens(cacheSeqlens, result);
        return result;
    }

    private static void ReadSeqlens(HostTensor<int> cacheSeqlens, Span<int> destination)
    {
        var stride = cacheSeqlens.Layout.Strides[0];
        var span = cacheSeqlens.Span;
        for (var i = 0; i < destination.Length; i++)
        {
            destination[i] = span[(int)(i * stride)];
        }
    }
}
