using System.Collections.Concurrent;
using System.Globalization;
using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Tensors;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// The portable kernel paths (mma.sync m16n8k16, cp.async; sm_80 and newer), one class for two
/// modules: <see cref="Registration"/>, the split-KV kernels of decode_splitkv.cu, whose variants
/// differ in query rows per CTA (16, 32, 64), K-ring depth and element type; and
/// <see cref="CompactRegistration"/>, those of decode_splitkv_compact.cu, which fit in the 99 KB
/// of shared memory per block of sm_86 and sm_89 (Q in registers, K in half blocks). Each variant
/// says what it is in its descriptor; q, the KV cache and the output must share one 16-bit
/// element type. The compact path comes after the full one, so it takes calls only where none of
/// decode_splitkv's kernels fits the device.
/// </summary>
internal sealed class MmaSyncPath : IDecodeKernelPath
{
    private readonly DecodePathRegistration _registration;
    private readonly KernelEntry[] _fitting = [];
    private readonly KernelDescriptor[] _all = [];
    private readonly ElementType[] _types = [];
    private readonly int _sharedMemoryLimit;
    private readonly ConcurrentDictionary<(ElementType Type, int Rows), KernelEntry> _chosen = new();

    private MmaSyncPath(DecodePathEnvironment environment, DecodePathRegistration registration)
    {
        _registration = registration;
        var kernels = environment.Kernels;
        if (!kernels.TryGetModule(registration.Module, out _, out var reason))
        {
            Unavailable = reason;
            return;
        }

        var entries = kernels.GetEntries(registration.Module);
        _all = [.. entries.Select(e => e.Descriptor)];
        _sharedMemoryLimit = entries.Count == 0 ? 0 : Math.Min(environment.SharedMemoryLimitBytes, entries.Min(e => e.MaxDynamicSharedMemoryBytes));
        _fitting = [.. entries.Where(e => e.Descriptor.SharedMemoryBytes <= _sharedMemoryLimit)];
        if (_fitting.Length == 0)
        {
            Unavailable = string.Create(
                CultureInfo.InvariantCulture,
                $"its kernels need at least {(_all.Length == 0 ? 0 : _all.Min(d => d.SharedMemoryBytes))} bytes of shared memory per block; {environment.Device} allows {_sharedMemoryLimit}");
            return;
        }

        foreach (var entry in _fitting)
        {
            entry.EnsureSharedMemoryLimit(entry.Descriptor.SharedMemoryBytes);
        }

        _types = [.. _fitting.Where(e => e.Descriptor.QueryType is not null).Select(e => e.Descriptor.QueryType!.Value).Distinct()];
    }

    /// <summary>The registration of the full-size portable path (decode_splitkv.cu).</summary>
    public static DecodePathRegistration Registration { get; } = new("mma.sync", "decode_splitkv", e => new MmaSyncPath(e, Registration!));

    /// <summary>
    /// The registration of the compact portable path (decode_splitkv_compact.cu): 16 query rows per
    /// CTA in 78,464 bytes of shared memory, for devices where no kernel of <see cref="Registration"/> fits.
    /// </summary>
    public static DecodePathRegistration CompactRegistration { get; } =
        new("mma.sync.compact", "decode_splitkv_compact", e => new MmaSyncPath(e, CompactRegistration!));

    DecodePathRegistration IDecodeKernelPath.Registration => _registration;

    /// <inheritdoc/>
    public string? Unavailable { get; }

    /// <summary>
    /// The variant for a row count: among the variants of <paramref name="type"/>, the preferred
    /// rows per CTA is the smallest that holds all <paramref name="rowsPerKvHead"/> rows of a KV
    /// head (else the largest there is); the variant is the deepest-pipelined one of that row count
    /// that fits <paramref name="sharedMemoryLimit"/>, or, when none fits, the one with the most
    /// rows and then the most stages among those that fit. Null when nothing fits.
    /// </summary>
    /// <param name="variants">The descriptors of the module's kernels.</param>
    /// <param name="type">The element type of q, the cache and the output.</param>
    /// <param name="rowsPerKvHead">s_q · h_q / h_kv.</param>
    /// <param name="sharedMemoryLimit">The dynamic shared memory a CTA may get.</param>
    /// <returns>The variant, or null.</returns>
    internal static KernelDescriptor? Choose(IEnumerable<KernelDescriptor> variants, ElementType type, int rowsPerKvHead, int sharedMemoryLimit)
    {
        var ofType = variants.Where(d => d.QueryType == type && d.KvType == type && d.OutputType == type && d.RowsPerCta > 0).ToArray();
        if (ofType.Length == 0)
        {
            return null;
        }

        var holding = ofType.Where(d => d.RowsPerCta >= rowsPerKvHead).Select(d => d.RowsPerCta).DefaultIfEmpty(ofType.Max(d => d.RowsPerCta)).Min();
        var fitting = ofType.Where(d => d.SharedMemoryBytes <= sharedMemoryLimit).ToArray();
        return fitting.Where(d => d.RowsPerCta == holding).OrderByDescending(d => d.Stages).FirstOrDefault()
            ?? fitting.OrderByDescending(d => d.RowsPerCta).ThenByDescending(d => d.Stages).FirstOrDefault();
    }

    /// <summary>Whether the path's kernels compute on a problem's element types and format.</summary>
    /// <param name="problem">The problem.</param>
    /// <param name="types">The element types the path has kernels for.</param>
    /// <returns>The answer.</returns>
    internal static KernelSupport Support(in MlaDecodeProblem problem, IReadOnlyCollection<ElementType> types) =>
        DecodePathRules.DenseSingleType(problem, Registration.Name, types);

    /// <summary>The grid of a variant: (ceil(rows / rows per CTA), h_kv, num_parts).</summary>
    /// <param name="shape">The shape.</param>
    /// <param name="rowsPerCta">The variant's rows per CTA.</param>
    /// <param name="numParts">The plan's parts.</param>
    /// <returns>The grid.</returns>
    internal static Dim3 Grid(MlaDecodeShape shape, int rowsPerCta, int numParts) => DecodePathRules.Grid(shape, rowsPerCta, numParts);

    /// <inheritdoc/>
    public KernelSupport Supports(in MlaDecodeProblem problem) =>
        Unavailable is { } reason
            ? KernelSupport.No(reason, "q")
            : DecodePathRules.DenseSingleType(problem, _registration.Name, _types);

    /// <inheritdoc/>
    public KernelPathInfo Describe(in MlaDecodeProblem problem, int numParts)
    {
        var variant = Variant(problem);
        return new KernelPathInfo(_registration.Name, variant.Descriptor, Grid(problem.Shape, variant.Descriptor.RowsPerCta, numParts));
    }

    /// <inheritdoc/>
    public void Enqueue(in DecodeLaunch launch)
    {
        var variant = Variant(launch.Problem);
        variant.Launch(Grid(launch.Problem.Shape, variant.Descriptor.RowsPerCta, launch.Plan.NumParts), launch.CommonParams(), launch.Stream, dependentLaunch: launch.DependentLaunch);
    }

    private KernelEntry Variant(in MlaDecodeProblem problem)
    {
        var key = (problem.QueryType, problem.Shape.RowsPerKvHead);
        if (_chosen.TryGetValue(key, out var cached))
        {
            return cached;
        }

        var chosen = Choose(_all, key.QueryType, key.RowsPerKvHead, _sharedMemoryLimit)
            ?? throw new InvalidOperationException($"No {_registration.Name} kernel for {key.QueryType.ShortName()}; ask Supports first.");
        return _chosen.GetOrAdd(key, _fitting.First(e => e.Descriptor == chosen));
    }
}
