using System.Buffers;
using System.Numerics.Tensors;
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
public sealed class CpuMlaDecoder
{
    private const int HeadDimVFixed = 512;
    private static readonly float Ln2 = MathF.Log(2f);
    private static readonly float Log2E = 1f / MathF.Log(2f);

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
    }

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
    /// four tasks per thread over parts × KV heads). Call <see cref="UpdatePlan"/> before decoding.
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
    /// <param name="cacheSeqlens">Sequence lengths, [b]; the ones <see cref="UpdatePlan"/> saw.</param>
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
            var seqlens = ValidateSequences(problem.Shape, cacheSeqlens, blockTable);
            var schedule = plan.Schedule!;
            CheckScheduleMatches(schedule, problem.Shape, seqlens, nameof(plan));
            Run(problem, resolved, q, kCache.Blocks, blockTable, seqlens, schedule, output, lse);
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

    private static int[] ValidateSequences(MlaDecodeShape shape, HostTensor<int> cacheSeqlens, HostTensor<int> blockTable)
    {
        MlaDecodeValidation.ValidateSequences(shape, cacheSeqlens, blockTable);
        return ReadSeqlens(cacheSeqlens);
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
    private static void CheckScheduleMatches(DecodeSchedule schedule, MlaDecodeShape shape, int[] seqlens, string paramName)
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

            var seqlens = ValidateSequences(problem.Shape, cacheSeqlens, blockTable);
            if (schedule is null)
            {
                schedule = DecodeSchedule.Compute(seqlens, PartsForCpu(problem.Shape.KvHeads));
            }
            else
            {
                CheckScheduleMatches(schedule, problem.Shape, seqlens, nameof(schedule));
            }

            Run(problem, resolved, q, kCache, blockTable, seqlens, schedule, output, lse);
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
        int[] seqlens,
        DecodeSchedule schedule,
        HostTensor<TOut> output,
        HostTensor<float> lse)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        new DecodeRun<TQ, TKv, TOut>(this, problem.Shape, options, q, kCache, blockTable, seqlens, schedule, output, lse).Execute();
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
        var count = (int)cacheSeqlens.Layout.Shape[0];
        var stride = cacheSeqlens.Layout.Strides[0];
        var span = cacheSeqlens.Span;
        var result = new int[count];
        for (var i = 0; i < count; i++)
        {
            result[i] = span[(int)(i * stride)];
        }

        return result;
    }

    /// <summary>The state of one decode call.</summary>
    private sealed class DecodeRun<TQ, TKv, TOut>
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        private readonly CpuMlaDecoder _owner;
        private readonly MlaDecodeShape _shape;
        private readonly bool _causal;
        private readonly float _scaleLog2;
        private readonly HostTensor<TQ> _q;
        private readonly HostTensor<TKv> _kCache;
        private readonly HostTensor<int> _blockTable;
        private readonly int[] _seqlens;
        private readonly DecodeSchedule _schedule;
        private readonly HostTensor<TOut> _output;
        private readonly HostTensor<float> _lse;
        private readonly int _rows;

        // Workspace for split requests only: compact slot index = _slotBase[request] + split index.
        private readonly int[] _slotBase;
        private readonly float[] _oAccum;   // [slots, h_kv, rows, 512]
        private readonly float[] _lseAccum; // [slots, h_kv, rows], log2 domain

        public DecodeRun(
            CpuMlaDecoder owner,
            MlaDecodeShape shape,
            MlaDecodeOptions options,
            HostTensor<TQ> q,
            HostTensor<TKv> kCache,
            HostTensor<int> blockTable,
            int[] seqlens,
            DecodeSchedule schedule,
            HostTensor<TOut> output,
            HostTensor<float> lse)
        {
            _owner = owner;
            _shape = shape;
            _causal = options.Causal;
            _scaleLog2 = options.GetSoftmaxScale(shape.HeadDim) * Log2E;
            _q = q;
            _kCache = kCache;
            _blockTable = blockTable;
            _seqlens = seqlens;
            _schedule = schedule;
            _output = output;
            _lse = lse;
            _rows = shape.RowsPerKvHead;

            _slotBase = new int[shape.Batch];
            long slots = 0;
            for (var i = 0; i < shape.Batch; i++)
            {
                _slotBase[i] = (int)slots;
                var count = schedule.SplitCount(i);
                if (count > 1)
                {
                    slots += count;
                }
            }

            var rowsTotal = slots * shape.KvHeads * _rows;
            if (rowsTotal * HeadDimVFixed > Array.MaxLength)
            {
                throw new InvalidOperationException(
                    $"The split-KV workspace would need {rowsTotal * HeadDimVFixed} floats; use a schedule with fewer parts.");
            }

            _oAccum = rowsTotal == 0 ? [] : new float[rowsTotal * HeadDimVFixed];
            _lseAccum = rowsTotal == 0 ? [] : new float[rowsTotal];
        }

        public void Execute()
        {
            var parallel = new ParallelOptions { MaxDegreeOfParallelism = _owner.MaxDegreeOfParallelism };
            var kvHeads = _shape.KvHeads;
            var tasks = _schedule.NumParts * kvHeads;
            Parallel.For(
                0,
                tasks,
                parallel,
                () => new Scratch(_rows, _shape.HeadDim),
                (task, _, scratch) =>
                {
                    RunPart(task / kvHeads, task % kvHeads, scratch);
                    return scratch;
                },
                scratch => scratch.Dispose());

            if (_oAccum.Length > 0)
            {
                var batch = _shape.Batch;
                Parallel.For(0, batch * kvHeads, parallel, item =>
                {
                    var request = item / kvHeads;
                    if (_schedule.SplitCount(request) > 1)
                    {
                        Combine(request, item % kvHeads);
                    }
                });
            }
        }

        private void RunPart(int partIndex, int kvHead, Scratch scratch)
        {
            var part = _schedule.Parts[partIndex];
            if (part.BeginRequest >= _shape.Batch)
            {
                return;
            }

            for (var request = part.BeginRequest; request <= part.EndRequest; request++)
            {
                var isBegin = request == part.BeginRequest;
                var isEnd = request == part.EndRequest;
                var blockCount = _schedule.BlockCounts[request];
                var beginBlock = isBegin ? part.BeginBlock : 0;
                var endBlock = isEnd ? part.EndBlock : blockCount;
                var isSplit = (isBegin ? part.FirstRequestIsSplit : isEnd ? part.LastRequestIsSplit : 0) != 0;
                var splitIndex = isBegin ? part.BeginSplit : 0;
                ProcessPiece(request, kvHead, beginBlock, endBlock, isSplit, splitIndex, scratch);
            }
        }

        /// <summary>Online softmax over blocks [beginBlock, endBlock) of one request for all rows of one KV head.</summary>
        private void ProcessPiece(int request, int kvHead, int beginBlock, int endBlock, bool isSplit, int splitIndex, Scratch scratch)
        {
            var d = _shape.HeadDim;
            var rows = _rows;
            var group = _shape.Group;
            var seqlen = _seqlens[request];
            var sq = _shape.QueryLength;

            var qLayout = _q.Layout;
            var qSpan = _q.Span;
            var qf = scratch.Q.AsSpan(0, rows * d);
            var rowMax = scratch.RowMax.AsSpan(0, rows);
            var rowSum = scratch.RowSum.AsSpan(0, rows);
            var visible = scratch.Visible.AsSpan(0, rows);
            var acc = scratch.Acc.AsSpan(0, rows * HeadDimVFixed);
            var maxVisible = 0;
            for (var r = 0; r < rows; r++)
            {
                var token = r / group;
                var head = (kvHead * group) + (r % group);
                var offset = (int)qLayout.OffsetOf(request, token, head, 0);
                FloatConversions.ToSingle<TQ>(qSpan.Slice(offset, d), qf.Slice(r * d, d));
                rowMax[r] = float.NegativeInfinity;
                rowSum[r] = 0f;
                visible[r] = _causal ? Math.Clamp(seqlen - sq + token + 1, 0, seqlen) : seqlen;
                maxVisible = Math.Max(maxVisible, visible[r]);
            }

            acc.Clear();

            var tokenBegin = beginBlock * DecodeSchedule.BlockSizeN;
            var tokenEnd = Math.Min(Math.Min(endBlock * DecodeSchedule.BlockSizeN, seqlen), maxVisible);
            var kLayout = _kCache.Layout;
            var kSpan = _kCache.Span;
            var kBlockStride = kLayout.Strides[0];
            var kRowStride = kLayout.Strides[1];
            var kHeadOffset = kvHead * kLayout.Strides[2];
            var pageSize = _shape.PageBlockSize;
            var btLayout = _blockTable.Layout;
            var btSpan = _blockTable.Span;
            var btRow = request * btLayout.Strides[0];
            var btCol = btLayout.Strides[1];
            var keys = scratch.Keys.AsSpan();
            var scores = scratch.Scores.AsSpan();

            for (var blockStart = tokenBegin; blockStart < tokenEnd; blockStart += DecodeSchedule.BlockSizeN)
            {
                var n = Math.Min(DecodeSchedule.BlockSizeN, tokenEnd - blockStart);

                // Gather and widen the keys of this block through the block table.
                for (var j = 0; j < n; j++)
                {
                    var t = blockStart + j;
                    var page = btSpan[(int)(btRow + ((t / pageSize) * btCol))];
                    var offset = (page * kBlockStride) + ((t % pageSize) * kRowStride) + kHeadOffset;
                    FloatConversions.ToSingle<TKv>(kSpan.Slice((int)offset, d), keys.Slice(j * d, d));
                }

                for (var r = 0; r < rows; r++)
                {
                    var count = Math.Min(n, visible[r] - blockStart);
                    if (count <= 0)
                    {
                        continue;
                    }

                    var qRow = qf.Slice(r * d, d);
                    var s = scores[..count];
                    for (var j = 0; j < count; j++)
                    {
                        s[j] = TensorPrimitives.Dot(qRow, keys.Slice(j * d, d)) * _scaleLog2;
                    }

                    var blockMax = TensorPrimitives.Max(s);
                    var oldMax = rowMax[r];
                    var newMax = Math.Max(oldMax, blockMax);
                    var accRow = acc.Slice(r * HeadDimVFixed, HeadDimVFixed);
                    if (oldMax != float.NegativeInfinity && newMax > oldMax)
                    {
                        var correction = MathF.Pow(2f, oldMax - newMax);
                        TensorPrimitives.Multiply(accRow, correction, accRow);
                        rowSum[r] *= correction;
                    }

                    TensorPrimitives.Subtract(s, newMax, s);
                    TensorPrimitives.Exp2(s, s);
                    rowSum[r] += TensorPrimitives.Sum(s);
                    for (var j = 0; j < count; j++)
                    {
                        TensorPrimitives.MultiplyAdd(keys.Slice(j * d, HeadDimVFixed), s[j], accRow, accRow);
                    }

                    rowMax[r] = newMax;
                }
            }

            // Epilogue: final output, or a normalised partial result in the workspace.
            var outputLayout = _output.Layout;
            var outputSpan = _output.Span;
            var lseLayout = _lse.Layout;
            var lseSpan = _lse.Span;
            var slot = _slotBase[request] + splitIndex;
            for (var r = 0; r < rows; r++)
            {
                var token = r / group;
                var head = (kvHead * group) + (r % group);
                var accRow = acc.Slice(r * HeadDimVFixed, HeadDimVFixed);
                var sum = rowSum[r];
                if (sum > 0f)
                {
                    TensorPrimitives.Multiply(accRow, 1f / sum, accRow);
                }
                else
                {
                    accRow.Clear();
                }

                var lse2 = sum > 0f ? MathF.Log2(sum) + rowMax[r] : float.NegativeInfinity;
                if (isSplit)
                {
                    var index = (((long)slot * _shape.KvHeads) + kvHead) * rows + r;
                    accRow.CopyTo(_oAccum.AsSpan((int)(index * HeadDimVFixed), HeadDimVFixed));
                    _lseAccum[index] = lse2;
                }
                else
                {
                    var offset = (int)outputLayout.OffsetOf(request, token, head, 0);
                    FloatConversions.FromSingle<TOut>(accRow, outputSpan.Slice(offset, HeadDimVFixed));
                    lseSpan[(int)lseLayout.OffsetOf(request, head, token)] =
                        sum > 0f ? lse2 * Ln2 : float.PositiveInfinity;
                }
            }
        }

        /// <summary>Merges the partial results of a split request for one KV head.</summary>
        private void Combine(int request, int kvHead)
        {
            var splits = _schedule.SplitCount(request);
            var rows = _rows;
            var group = _shape.Group;
            var outputLayout = _output.Layout;
            var outputSpan = _output.Span;
            var lseLayout = _lse.Layout;
            var lseSpan = _lse.Span;
            var result = ArrayPool<float>.Shared.Rent(HeadDimVFixed);
            try
            {
                var row = result.AsSpan(0, HeadDimVFixed);
                for (var r = 0; r < rows; r++)
                {
                    var max = float.NegativeInfinity;
                    for (var s = 0; s < splits; s++)
                    {
                        max = Math.Max(max, _lseAccum[Index(request, s, kvHead, r)]);
                    }

                    var token = r / group;
                    var head = (kvHead * group) + (r % group);
                    float lseNatural;
                    row.Clear();
                    if (max == float.NegativeInfinity)
                    {
                        lseNatural = float.PositiveInfinity;
                    }
                    else
                    {
                        var sum = 0f;
                        for (var s = 0; s < splits; s++)
                        {
                            sum += MathF.Pow(2f, _lseAccum[Index(request, s, kvHead, r)] - max);
                        }

                        var global = MathF.Log2(sum) + max;
                        for (var s = 0; s < splits; s++)
                        {
                            var index = Index(request, s, kvHead, r);
                            var weight = MathF.Pow(2f, _lseAccum[index] - global);
                            if (weight > 0f)
                            {
                                TensorPrimitives.MultiplyAdd(
                                    _oAccum.AsSpan((int)(index * HeadDimVFixed), HeadDimVFixed), weight, row, row);
                            }
                        }

                        lseNatural = global * Ln2;
                    }

                    var offset = (int)outputLayout.OffsetOf(request, token, head, 0);
                    FloatConversions.FromSingle<TOut>(row, outputSpan.Slice(offset, HeadDimVFixed));
                    lseSpan[(int)lseLayout.OffsetOf(request, head, token)] = lseNatural;
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(result);
            }
        }

        private long Index(int request, int split, int kvHead, int row) =>
            ((((long)_slotBase[request] + split) * _shape.KvHeads) + kvHead) * _rows + row;
    }

    /// <summary>Per-thread buffers, rented from the shared pool.</summary>
    private sealed class Scratch : IDisposable
    {
        public Scratch(int rows, int headDim)
        {
            Q = ArrayPool<float>.Shared.Rent(rows * headDim);
            Acc = ArrayPool<float>.Shared.Rent(rows * HeadDimVFixed);
            RowMax = ArrayPool<float>.Shared.Rent(rows);
            RowSum = ArrayPool<float>.Shared.Rent(rows);
            Visible = ArrayPool<int>.Shared.Rent(rows);
            Keys = ArrayPool<float>.Shared.Rent(DecodeSchedule.BlockSizeN * headDim);
            Scores = ArrayPool<float>.Shared.Rent(DecodeSchedule.BlockSizeN);
        }

        public float[] Q { get; }

        public float[] Acc { get; }

        public float[] RowMax { get; }

        public float[] RowSum { get; }

        public int[] Visible { get; }

        public float[] Keys { get; }

        public float[] Scores { get; }

        public void Dispose()
        {
            ArrayPool<float>.Shared.Return(Q);
            ArrayPool<float>.Shared.Return(Acc);
            ArrayPool<float>.Shared.Return(RowMax);
            ArrayPool<float>.Shared.Return(RowSum);
            ArrayPool<int>.Shared.Return(Visible);
            ArrayPool<float>.Shared.Return(Keys);
            ArrayPool<float>.Shared.Return(Scores);
        }
    }
}
