using FlashMla.Tensors;

namespace FlashMla.Mla;

/// <summary>
/// Argument checks shared by the decode backends. Every check runs before any output is written.
/// </summary>
/// <remarks>
/// Layout problems (rank, shape, strides) raise <see cref="ArgumentException"/>; bad values (options,
/// sequence lengths, block ids) raise <see cref="ArgumentOutOfRangeException"/>. In both cases
/// <see cref="ArgumentException.ParamName"/> names the offending parameter (<c>q</c>, <c>kCache</c>,
/// <c>blockTable</c>, <c>cacheSeqlens</c>, <c>output</c>, <c>lse</c> or <c>options</c>) and the
/// message gives the expected and the actual values.
/// </remarks>
public static class MlaDecodeValidation
{
    /// <summary>The q/k head dimensions the decoders accept.</summary>
    public static IReadOnlyList<int> SupportedHeadDims { get; } = [576, 512];

    /// <summary>The only supported value head dimension.</summary>
    public const int SupportedHeadDimV = 512;

    /// <summary>
    /// Checks the layouts of all decode arguments against each other and returns the decode shape.
    /// </summary>
    /// <param name="q">Queries, [b, s_q, h_q, d] with d ∈ {576, 512}.</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d].</param>
    /// <param name="blockTable">Page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">Sequence lengths, [b].</param>
    /// <param name="output">Output, [b, s_q, h_q, HeadDimV].</param>
    /// <param name="lse">Log-sum-exp output, [b, h_q, s_q].</param>
    /// <param name="options">Decode options.</param>
    /// <returns>The validated shape.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">A layout is inconsistent (rank, dimension, stride).</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option has an unsupported value.</exception>
    public static MlaDecodeShape ValidateLayouts(
        TensorLayout q,
        TensorLayout kCache,
        TensorLayout blockTable,
        TensorLayout cacheSeqlens,
        TensorLayout output,
        TensorLayout lse,
        MlaDecodeOptions options)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(kCache);
        ArgumentNullException.ThrowIfNull(blockTable);
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(lse);
        ArgumentNullException.ThrowIfNull(options);

        ValidateOptions(options);

        // q: [b, s_q, h_q, d]
        RequireRank(q, 4, "[batch, s_q, h_q, head_dim]", nameof(q));
        RequireIntDims(q, nameof(q));
        var batch = (int)q.Shape[0];
        var queryLength = (int)q.Shape[1];
        var queryHeads = (int)q.Shape[2];
        var headDim = (int)q.Shape[3];
        RequirePositive(q, 0, "batch", nameof(q));
        RequirePositive(q, 1, "s_q", nameof(q));
        RequirePositive(q, 2, "h_q", nameof(q));
        if (headDim != 576 && headDim != 512)
        {
            throw new ArgumentException(
                $"q's head dimension must be 576 or 512; got {headDim} (q is {q}).", nameof(q));
        }

        if (options.HeadDimV > headDim)
        {
            throw new ArgumentOutOfRangeException(
                nameof(options),
                $"options.HeadDimV = {options.HeadDimV} exceeds the head dimension {headDim} of q and kCache.");
        }

        RequireLastDimContiguous(q, nameof(q));

        // kCache: [num_blocks, page_block_size, h_kv, d]
        RequireRank(kCache, 4, "[num_blocks, page_block_size, h_kv, head_dim]", nameof(kCache));
        RequireIntDims(kCache, nameof(kCache));
        var numBlocks = (int)kCache.Shape[0];
        var pageBlockSize = (int)kCache.Shape[1];
        var kvHeads = (int)kCache.Shape[2];
        RequirePositive(kCache, 0, "num_blocks", nameof(kCache));
        if (pageBlockSize < 1)
        {
            throw new ArgumentException(
                $"kCache's page_block_size (dimension 1) must be at least 1; got {pageBlockSize} (kCache is {kCache}).",
                nameof(kCache));
        }

        RequirePositive(kCache, 2, "h_kv", nameof(kCache));
        if (kCache.Shape[3] != headDim)
        {
            throw new ArgumentException(
                $"kCache's head dimension must equal q's ({headDim}); got {kCache.Shape[3]} (kCache is {kCache}).",
                nameof(kCache));
        }

        if (queryHeads % kvHeads != 0)
        {
            throw new ArgumentException(
                $"The number of query heads h_q = {queryHeads} (q dimension 2) must be a multiple of the number of KV heads h_kv = {kvHeads} (kCache dimension 2); {queryHeads} % {kvHeads} = {queryHeads % kvHeads}.",
                nameof(kCache));
        }

        RequireLastDimContiguous(kCache, nameof(kCache));

        // blockTable: [b, max_blocks_per_seq]
        RequireRank(blockTable, 2, "[batch, max_blocks_per_seq]", nameof(blockTable));
        RequireIntDims(blockTable, nameof(blockTable));
        if (blockTable.Shape[0] != batch)
        {
            throw new ArgumentException(
                $"blockTable must have shape [{batch}, max_blocks_per_seq] (batch {batch} from q); got {TensorLayout.FormatDims(blockTable.Shape)}.",
                nameof(blockTable));
        }

        RequirePositive(blockTable, 1, "max_blocks_per_seq", nameof(blockTable));
        var maxBlocks = (int)blockTable.Shape[1];
        RequireLastDimContiguous(blockTable, nameof(blockTable));

        // cacheSeqlens: [b]
        RequireRank(cacheSeqlens, 1, "[batch]", nameof(cacheSeqlens));
        if (cacheSeqlens.Shape[0] != batch)
        {
            throw new ArgumentException(
                $"cacheSeqlens must have shape [{batch}] (batch {batch} from q); got {TensorLayout.FormatDims(cacheSeqlens.Shape)}.",
                nameof(cacheSeqlens));
        }

        RequireLastDimContiguous(cacheSeqlens, nameof(cacheSeqlens));

        // output: [b, s_q, h_q, HeadDimV]
        RequireRank(output, 4, "[batch, s_q, h_q, head_dim_v]", nameof(output));
        RequireShape(output, [batch, queryLength, queryHeads, options.HeadDimV], "[batch, s_q, h_q, head_dim_v]", nameof(output));
        RequireLastDimContiguous(output, nameof(output));

        // lse: [b, h_q, s_q]
        RequireRank(lse, 3, "[batch, h_q, s_q]", nameof(lse));
        RequireShape(lse, [batch, queryHeads, queryLength], "[batch, h_q, s_q]", nameof(lse));
        RequireLastDimContiguous(lse, nameof(lse));

        if ((long)queryLength * (queryHeads / kvHeads) > int.MaxValue)
        {
            throw new ArgumentException(
                $"s_q · h_q / h_kv = {(long)queryLength * (queryHeads / kvHeads)} query rows per KV head exceeds {int.MaxValue}.",
                nameof(q));
        }

        return new MlaDecodeShape(batch, queryLength, queryHeads, kvHeads, headDim, options.HeadDimV, numBlocks, pageBlockSize, maxBlocks);
    }

    /// <summary>
    /// Checks a decode call's element types and layouts and returns its problem: the element types
    /// of q, the KV cache and the output must be attention element types (ParamName <c>q</c>,
    /// <c>kCache</c>, <c>output</c>), the layouts must pass <see cref="ValidateLayouts"/>, and the
    /// KV format must describe the cache tensor (its element type, its head dimension = q's).
    /// Whether a backend supports the combination of types is the backend's question.
    /// </summary>
    /// <typeparam name="TQ">q's .NET element type.</typeparam>
    /// <typeparam name="TKv">The cache tensor's .NET element type.</typeparam>
    /// <typeparam name="TOut">The output's .NET element type.</typeparam>
    /// <param name="q">q, [b, s_q, h_q, d].</param>
    /// <param name="kCache">The cache's blocks, [num_blocks, page_block_size, h_kv, elements per token].</param>
    /// <param name="kvFormat">The cache's format.</param>
    /// <param name="blockTable">The block table.</param>
    /// <param name="cacheSeqlens">The lengths.</param>
    /// <param name="output">The output.</param>
    /// <param name="lse">The LSE.</param>
    /// <param name="options">The options.</param>
    /// <returns>The problem.</returns>
    /// <exception cref="ArgumentNullException">A tensor is null.</exception>
    /// <exception cref="ArgumentException">An element type, a layout or the format is invalid.</exception>
    public static MlaDecodeProblem ValidateProblem<TQ, TKv, TOut>(
        ITensorView q,
        ITensorView kCache,
        KvCacheFormat kvFormat,
        ITensorView blockTable,
        ITensorView cacheSeqlens,
        ITensorView output,
        ITensorView lse,
        MlaDecodeOptions options)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(kCache);
        ArgumentNullException.ThrowIfNull(blockTable);
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(lse);
        var queryType = ElementTypes.Of<TQ>(nameof(q));
        var storageType = ElementTypes.Of<TKv>(nameof(kCache));
        var outputType = ElementTypes.Of<TOut>(nameof(output));
        ArgumentNullException.ThrowIfNull(kvFormat, nameof(kCache));
        var shape = ValidateLayouts(q.Layout, kCache.Layout, blockTable.Layout, cacheSeqlens.Layout, output.Layout, lse.Layout, options);
        if (storageType != kvFormat.ElementType)
        {
            throw new ArgumentException(
                $"kCache holds {storageType.ShortName()} elements but its format is {kvFormat} ({kvFormat.ElementType.ShortName()}).", nameof(kCache));
        }

        if (kvFormat.HeadDim != shape.HeadDim || kvFormat.ElementsPerToken != kCache.Layout.Shape[3])
        {
            throw new ArgumentException(
                $"kCache's format {kvFormat} stores {kvFormat.ElementsPerToken} elements per token for head dimension {kvFormat.HeadDim}; q has head dimension {shape.HeadDim} and kCache's last dimension is {kCache.Layout.Shape[3]}.",
                nameof(kCache));
        }

        return new MlaDecodeProblem(shape, queryType, kvFormat, outputType, kCache.Layout);
    }

    /// <summary>
    /// The format of a dense cache tensor of <typeparamref name="TKv"/> (its head dimension from
    /// its last dimension), for the overloads that take a plain tensor. q's element type is
    /// checked first, so that errors name the parameters in the order <see cref="ValidateProblem{TQ, TKv, TOut}"/> does.
    /// </summary>
    internal static KvCacheFormat DenseFormat<TQ, TKv>(TensorLayout kCache)
        where TQ : unmanaged
        where TKv : unmanaged
    {
        _ = ElementTypes.Of<TQ>("q");
        return KvCacheFormat.DenseOf<TKv>(kCache);
    }

    /// <summary>
    /// Checks host-visible sequence data: every length is in <c>[0, max_blocks_per_seq · page_block_size]</c>
    /// and the block ids of the pages in use (the first <c>ceil(seqlen / page_block_size)</c> entries
    /// of each row) are in <c>[0, num_blocks)</c>. Entries past a request's last page are not read.
    /// </summary>
    /// <param name="shape">The shape returned by <see cref="ValidateLayouts"/>.</param>
    /// <param name="cacheSeqlens">Sequence lengths, [b] (any stride).</param>
    /// <param name="blockTable">Page ids, [b, max_blocks_per_seq] (any strides).</param>
    /// <exception cref="ArgumentNullException">A tensor is null.</exception>
    /// <exception cref="ArgumentException">A tensor's shape does not match <paramref name="shape"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A length or a block id in use is out of range.</exception>
    public static void ValidateSequences(MlaDecodeShape shape, HostTensor<int> cacheSeqlens, HostTensor<int> blockTable)
    {
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentNullException.ThrowIfNull(blockTable);
        if (cacheSeqlens.Layout.Rank != 1 || cacheSeqlens.Layout.Shape[0] != shape.Batch)
        {
            throw new ArgumentException(
                $"cacheSeqlens must have shape [{shape.Batch}]; got {TensorLayout.FormatDims(cacheSeqlens.Layout.Shape)}.",
                nameof(cacheSeqlens));
        }

        if (blockTable.Layout.Rank != 2 || blockTable.Layout.Shape[0] != shape.Batch || blockTable.Layout.Shape[1] != shape.MaxBlocksPerSequence)
        {
            throw new ArgumentException(
                $"blockTable must have shape [{shape.Batch}, {shape.MaxBlocksPerSequence}]; got {TensorLayout.FormatDims(blockTable.Layout.Shape)}.",
                nameof(blockTable));
        }

        var seqlens = cacheSeqlens.Span;
        var seqStride = cacheSeqlens.Layout.Strides[0];
        var table = blockTable.Span;
        var rowStride = blockTable.Layout.Strides[0];
        var colStride = blockTable.Layout.Strides[1];
        var capacity = shape.Capacity;
        for (var i = 0; i < shape.Batch; i++)
        {
            var seqlen = seqlens[(int)(i * seqStride)];
            CheckSequenceLength(i, seqlen, shape.MaxBlocksPerSequence, shape.PageBlockSize);

            var pagesInUse = (int)(((long)seqlen + shape.PageBlockSize - 1) / shape.PageBlockSize);
            for (var j = 0; j < pagesInUse; j++)
            {
                var id = table[(int)(i * rowStride + j * colStride)];
                if (id < 0 || id >= shape.NumBlocks)
                {
                    throw new ArgumentOutOfRangeException(
                        nameof(blockTable),
                        $"blockTable[{i}, {j}] = {id} is not a valid block id: ids of pages in use must be in [0, {shape.NumBlocks}) (num_blocks of kCache). Request {i} has seqlen {seqlen}, so its first {pagesInUse} page(s) of {shape.PageBlockSize} tokens are in use.");
                }
            }
        }
    }

    /// <summary>
    /// Checks that every length is in <c>[0, max_blocks_per_seq · page_block_size]</c> (what
    /// <c>UpdatePlan</c> checks on the host; ParamName <c>cacheSeqlens</c>).
    /// </summary>
    /// <param name="seqlens">The lengths.</param>
    /// <param name="maxBlocksPerSequence">Block-table columns.</param>
    /// <param name="pageBlockSize">Tokens per page.</param>
    /// <exception cref="ArgumentOutOfRangeException">A length is out of range.</exception>
    internal static void ValidateSequenceLengths(ReadOnlySpan<int> seqlens, int maxBlocksPerSequence, int pageBlockSize)
    {
        for (var i = 0; i < seqlens.Length; i++)
        {
            CheckSequenceLength(i, seqlens[i], maxBlocksPerSequence, pageBlockSize);
        }
    }

    private static void CheckSequenceLength(int request, int seqlen, int maxBlocksPerSequence, int pageBlockSize)
    {
        var capacity = (long)maxBlocksPerSequence * pageBlockSize;
        if (seqlen < 0)
        {
            throw new ArgumentOutOfRangeException(
                "cacheSeqlens",
                $"cacheSeqlens[{request}] = {seqlen} is negative; sequence lengths must be in [0, {capacity}] (max_blocks_per_seq {maxBlocksPerSequence} × page_block_size {pageBlockSize}).");
        }

        if (seqlen > capacity)
        {
            throw new ArgumentOutOfRangeException(
                "cacheSeqlens",
                $"cacheSeqlens[{request}] = {seqlen} exceeds the block table's capacity {capacity} (max_blocks_per_seq {maxBlocksPerSequence} × page_block_size {pageBlockSize}).");
        }
    }

    private static void ValidateOptions(MlaDecodeOptions options)
    {
        if (options.HeadDimV != SupportedHeadDimV)
        {
            throw new ArgumentOutOfRangeException(
                nameof(options),
                $"options.HeadDimV must be {SupportedHeadDimV}; got {options.HeadDimV}.");
        }

        if (options.SoftmaxScale is { } scale && !float.IsFinite(scale))
        {
            throw new ArgumentOutOfRangeException(
                nameof(options),
                $"options.SoftmaxScale must be a finite number (or null for head_dim^-0.5); got {scale}.");
        }
    }

    private static void RequireRank(TensorLayout layout, int rank, string dims, string paramName)
    {
        if (layout.Rank != rank)
        {
            throw new ArgumentException(
                $"{paramName} must have rank {rank} {dims}; got rank {layout.Rank} ({layout}).",
                paramName);
        }
    }

    private static void RequireIntDims(TensorLayout layout, string paramName)
    {
        for (var i = 0; i < layout.Rank; i++)
        {
            if (layout.Shape[i] > int.MaxValue)
            {
                throw new ArgumentException(
                    $"{paramName} dimension {i} is {layout.Shape[i]}; at most {int.MaxValue} is supported ({layout}).",
                    paramName);
            }
        }
    }

    private static void RequirePositive(TensorLayout layout, int dim, string name, string paramName)
    {
        if (layout.Shape[dim] < 1)
        {
            throw new ArgumentException(
                $"{paramName}'s {name} (dimension {dim}) must be at least 1; got {layout.Shape[dim]} ({layout}).",
                paramName);
        }
    }

    private static void RequireShape(TensorLayout layout, ReadOnlySpan<long> expected, string dims, string paramName)
    {
        if (!layout.Shape.SequenceEqual(expected))
        {
            throw new ArgumentException(
                $"{paramName} must have shape {TensorLayout.FormatDims(expected)} {dims}; got {TensorLayout.FormatDims(layout.Shape)}.",
                paramName);
        }
    }

    private static void RequireLastDimContiguous(TensorLayout layout, string paramName)
    {
        var last = layout.Rank - 1;
        if (layout.Shape[last] > 1 && layout.Strides[last] != 1)
        {
            throw new ArgumentException(
                $"{paramName}'s last dimension must be contiguous (stride 1); got stride {layout.Strides[last]} ({layout}).",
                paramName);
        }
    }
}
