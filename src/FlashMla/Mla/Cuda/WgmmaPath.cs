using System.Collections.Concurrent;
using System.Globalization;
using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Tensors;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// The Hopper kernel path: the split-KV kernels of decode_sm90.cu (wgmma, TMA, warp
/// specialization; sm_90a only). One entry per element type and head dimension, 64 query rows
/// per CTA; the K cache is read in 64×64 TMA boxes through a tensor map encoded here on the host
/// (cached per cache tensor), so the page size must be a multiple of 64. Calls it does not
/// support fall through to the portable path.
/// </summary>
internal sealed class WgmmaPath : IDecodeKernelPath
{
    /// <summary>Keys and columns of one TMA box; the page size must be a multiple of the keys.</summary>
    internal const int BoxSize = 64;

    /// <summary>Tensor maps kept at most (one per distinct KV cache tensor); the cache is cleared when full.</summary>
    private const int MaxCachedMaps = 256;

    /// <summary>TMA's limit on a global stride, in bytes (2^40).</summary>
    private const long MaxStrideBytes = 1L << 40;

    /// <summary>
    /// The fewest (64-row tile, 64-key block) pairs per SM, counted over the block table's capacity,
    /// for which the default decoder takes this path when a KV head has more than
    /// <see cref="NarrowRows"/> query rows. Since the Q load of v8 this path finishes first at any
    /// size there (docs/perf-notes.md, v8, latency suite: 0.24 pairs per SM at b 1, h_q 128,
    /// s_k 1k), so the threshold is 0. Engines size the block table for the batch's longest
    /// request, so the capacity stands for the step's work.
    /// </summary>
    internal const int MinBlocksPerSmWide = 0;

    /// <summary>
    /// The same threshold for calls of at most <see cref="NarrowRows"/> rows per KV head: the 64-row
    /// wgmma tile is then at least half empty, while the portable path's 16- and 32-row kernels do
    /// only the rows there are; below about one pair per SM they finish first (v8).
    /// </summary>
    internal const int MinBlocksPerSmNarrow = 1;

    /// <summary>Rows per KV head (s_q · h_q / h_kv) up to which <see cref="MinBlocksPerSmNarrow"/> applies.</summary>
    internal const int NarrowRows = 32;

    private readonly Dictionary<(ElementType Type, int HeadDim), KernelEntry> _entries = [];
    private readonly ElementType[] _types = [];
    private readonly ConcurrentDictionary<TensorMapKey, TensorMap> _maps = new();
    private readonly CudaContext? _context;
    private readonly int _smCount;
    private readonly bool _pathsChosenByCaller;

    private WgmmaPath(DecodePathEnvironment environment)
    {
        var kernels = environment.Kernels;
        _smCount = environment.Device.MultiprocessorCount;
        _pathsChosenByCaller = environment.PathsChosenByCaller;
        if (!kernels.TryGetModule(Registration.Module, out _, out var reason))
        {
            Unavailable = reason;
            return;
        }

        _context = kernels.Context;
        var entries = kernels.GetEntries(Registration.Module);
        var limit = Math.Min(environment.SharedMemoryLimitBytes, entries.Count == 0 ? 0 : entries.Min(e => e.MaxDynamicSharedMemoryBytes));
        foreach (var entry in entries.Where(e => e.Descriptor.SharedMemoryBytes <= limit && e.Descriptor.QueryType is not null))
        {
            entry.EnsureSharedMemoryLimit(entry.Descriptor.SharedMemoryBytes);
            _entries[(entry.Descriptor.QueryType!.Value, entry.Descriptor.HeadDim)] = entry;
        }

        if (_entries.Count == 0)
        {
            Unavailable = string.Create(
                CultureInfo.InvariantCulture,
                $"its kernels need {(entries.Count == 0 ? 0 : entries.Min(e => e.Descriptor.SharedMemoryBytes))} bytes of shared memory per block; {environment.Device} allows {limit}");
            return;
        }

        _types = [.. _entries.Keys.Select(k => k.Type).Distinct()];
    }

    /// <summary>The path's registration.</summary>
    public static DecodePathRegistration Registration { get; } = new("wgmma", "decode_sm90", e => new WgmmaPath(e));

    DecodePathRegistration IDecodeKernelPath.Registration => Registration;

    /// <inheritdoc/>
    public string? Unavailable { get; }

    /// <summary>
    /// The layout rules of the path, apart from element types: a page size that is a multiple of
    /// <see cref="BoxSize"/> and byte strides TMA accepts (the decoder has already checked that they
    /// are multiples of 16).
    /// </summary>
    /// <param name="problem">The problem.</param>
    /// <returns>The answer.</returns>
    internal static KernelSupport SupportLayout(in MlaDecodeProblem problem)
    {
        var shape = problem.Shape;
        if (shape.PageBlockSize % BoxSize != 0)
        {
            return KernelSupport.No(
                string.Create(CultureInfo.InvariantCulture, $"the {Registration.Name} kernels read the cache in boxes of {BoxSize} tokens, so page_block_size must be a multiple of {BoxSize}; it is {shape.PageBlockSize}"),
                "kCache");
        }

        var element = problem.KvFormat.ElementType.SizeInBytes;
        var strides = problem.KvLayout.Strides;
        for (var d = 0; d < 3; d++)
        {
            if ((long)strides[d] * element >= MaxStrideBytes)
            {
                return KernelSupport.No(
                    string.Create(CultureInfo.InvariantCulture, $"kCache's stride {strides[d]} of dimension {d} exceeds the 2^40 bytes a tensor map allows"),
                    "kCache");
            }
        }

        return KernelSupport.Yes;
    }

    /// <inheritdoc/>
    public KernelSupport Supports(in MlaDecodeProblem problem)
    {
        if (Unavailable is { } reason)
        {
            return KernelSupport.No(reason, "q");
        }

        var types = DecodePathRules.DenseSingleType(problem, Registration.Name, _types);
        if (!types.IsSupported)
        {
            return types;
        }

        if (!_entries.ContainsKey((problem.QueryType, problem.Shape.HeadDim)))
        {
            return KernelSupport.No(
                string.Create(CultureInfo.InvariantCulture, $"the {Registration.Name} kernels are built for head dims [{string.Join(", ", _entries.Keys.Select(k => k.HeadDim).Distinct())}], not {problem.Shape.HeadDim}"),
                "q");
        }

        var layout = SupportLayout(problem);
        return layout.IsSupported ? SupportWork(problem.Shape, _pathsChosenByCaller ? 0 : MinBlocks(problem.Shape, _smCount)) : layout;
    }

    /// <summary>The (tile, block) pairs from which the default decoder takes this path for a shape.</summary>
    /// <param name="shape">The shape.</param>
    /// <param name="smCount">The device's SM count.</param>
    /// <returns><see cref="MinBlocksPerSmNarrow"/> or <see cref="MinBlocksPerSmWide"/> times the SM count.</returns>
    internal static long MinBlocks(MlaDecodeShape shape, int smCount) =>
        (long)(shape.RowsPerKvHead <= NarrowRows ? MinBlocksPerSmNarrow : MinBlocksPerSmWide) * smCount;

    /// <summary>
    /// Whether a shape brings at least <paramref name="minBlocks"/> (tile, block) pairs: the 64-row
    /// tiles of every KV head times the 64-key blocks of the block table's capacity, over the batch.
    /// </summary>
    /// <param name="shape">The shape.</param>
    /// <param name="minBlocks">The threshold (0: always).</param>
    /// <returns>The answer.</returns>
    internal static KernelSupport SupportWork(MlaDecodeShape shape, long minBlocks)
    {
        var tiles = (long)((shape.RowsPerKvHead + BoxSize - 1) / BoxSize) * shape.KvHeads;
        var work = tiles * shape.Batch * ((shape.Capacity + BoxSize - 1) / BoxSize);
        return work >= minBlocks
            ? KernelSupport.Yes
            : KernelSupport.No(
                string.Create(CultureInfo.InvariantCulture, $"the call brings {work} (64-row tile, 64-key block) pairs over the block table's capacity, fewer than the {minBlocks} for which the {Registration.Name} kernels beat the portable ones; pin the path to use it anyway"),
                "blockTable");
    }

    /// <inheritdoc/>
    public KernelPathInfo Describe(in MlaDecodeProblem problem, int numParts)
    {
        var entry = Entry(problem);
        return new KernelPathInfo(Registration.Name, entry.Descriptor, DecodePathRules.Grid(problem.Shape, entry.Descriptor.RowsPerCta, numParts));
    }

    /// <inheritdoc/>
    public void Enqueue(in DecodeLaunch launch)
    {
        var entry = Entry(launch.Problem);
        var parameters = new DecodeParamsSm90 { D = launch.CommonParams(), KMap = TensorMapOf(launch) };
        entry.Launch(DecodePathRules.Grid(launch.Problem.Shape, entry.Descriptor.RowsPerCta, launch.Plan.NumParts), parameters, launch.Stream, dependentLaunch: launch.DependentLaunch);
    }

    /// <summary>
    /// The K cache's tensor map: dimensions (column, slot in page, KV head, block) innermost
    /// first, boxes of 64 columns × 64 slots, 128-byte swizzle, out-of-range boxes read as zeros
    /// (which keeps a bad block id harmless). Encoded once per cache tensor.
    /// </summary>
    private TensorMap TensorMapOf(in DecodeLaunch launch)
    {
        var problem = launch.Problem;
        var shape = problem.Shape;
        var strides = problem.KvLayout.Strides;
        var element = (ulong)problem.KvFormat.ElementType.SizeInBytes;
        var rowStride = (ulong)strides[1] * element;

        // A dimension of size 1 may carry any stride; TMA still checks it, so give it a valid one.
        var headStride = shape.KvHeads > 1 ? (ulong)strides[2] * element : rowStride;
        var key = new TensorMapKey(launch.KCache, problem.KvFormat.ElementType, shape.HeadDim, shape.PageBlockSize, shape.KvHeads, shape.NumBlocks, rowStride, headStride, (ulong)strides[0] * element);
        if (_maps.TryGetValue(key, out var map))
        {
            return map;
        }

        map = TensorMap.EncodeTiled(
            _context!,
            problem.KvFormat.ElementType == ElementType.BFloat16 ? TensorMapDataType.BFloat16 : TensorMapDataType.Float16,
            launch.KCache,
            [(ulong)shape.HeadDim, (ulong)shape.PageBlockSize, (ulong)shape.KvHeads, (ulong)shape.NumBlocks],
            [key.RowStrideBytes, key.HeadStrideBytes, key.BlockStrideBytes],
            [BoxSize, BoxSize, 1, 1],
            swizzle: TensorMapSwizzle.Swizzle128B,
            l2Promotion: TensorMapL2Promotion.L2Promotion128B);
        if (_maps.Count >= MaxCachedMaps)
        {
            _maps.Clear();
        }

        _maps[key] = map;
        return map;
    }

    private KernelEntry Entry(in MlaDecodeProblem problem) =>
        _entries.TryGetValue((problem.QueryType, problem.Shape.HeadDim), out var entry)
            ? entry
            : throw new InvalidOperationException($"No {Registration.Name} kernel for {problem.QueryType.ShortName()}, head dim {problem.Shape.HeadDim}; ask Supports first.");

    /// <summary>What a tensor map encodes: the cache's address, element type, dimensions and byte strides.</summary>
    private readonly record struct TensorMapKey(
        ulong Address,
        ElementType Type,
        int HeadDim,
        int PageBlockSize,
        int KvHeads,
        int NumBlocks,
        ulong RowStrideBytes,
        ulong HeadStrideBytes,
        ulong BlockStrideBytes);
}
