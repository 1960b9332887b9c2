using System.Globalization;
using FlashMla.Cli.Output;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Cli;

/// <summary>
/// The names under which a case's sizes reach the user: the shape options of <c>decode</c> and
/// <c>bench</c>, or the fields of one case of a cases file. Size errors name the one that made the
/// case too large.
/// </summary>
internal sealed record ShapeNames(string Batch, string SeqlenK, string QueryLength, string QueryHeads, string KvHeads, string PageSize)
{
    /// <summary>The command-line options.</summary>
    public static ShapeNames Options { get; } = new("--batch", "--seqlen", "--sq", "--heads", "--kv-heads", "--page-size");

    /// <summary>The fields of a case in a cases file, after <paramref name="where"/> (e.g. <c>--cases latency.json: case [3] "b1 h16 s_k1024":</c>).</summary>
    public static ShapeNames CaseFields(string where) =>
        new($"{where} field b", $"{where} field s_k", $"{where} field s_q", $"{where} field h_q", $"{where} field h_kv", $"{where} field page_block_size");
}

/// <summary>One tensor (or host array) of a case, its size computed in saturating 64-bit arithmetic.</summary>
/// <param name="Name">What it is, e.g. "q" or "k_cache".</param>
/// <param name="Shape">Its shape.</param>
/// <param name="ElementBytes">Bytes per element.</param>
/// <param name="Drivers">The shape values that make it large, with their names (an option or a field).</param>
internal sealed record CaseArray(string Name, long[] Shape, int ElementBytes, CaseDriver[] Drivers)
{
    /// <summary>The element count (long.MaxValue when it overflows).</summary>
    public long Elements => CaseBudget.Product(Shape);

    /// <summary>The size in bytes (long.MaxValue when it overflows).</summary>
    public long Bytes => CaseBudget.Product(Elements, ElementBytes);

    /// <summary>"q [4, 1, 128, 576] bf16".</summary>
    public string Describe(string elementName) => $"{Name} {TableOut.Shape(Shape)} {elementName}";

    /// <summary>The driver furthest above its default: the one the user most likely made too large, as its label.</summary>
    public string Culprit() => Drivers.MaxBy(d => d.Ratio)!.Label;
}

/// <summary>A shape value that makes an array large: its label ("--batch 1000") and how far it is above its default.</summary>
/// <param name="Label">The option or field with the value given, e.g. <c>--batch 1000</c>.</param>
/// <param name="Ratio">The value that enters the size over its default.</param>
internal sealed record CaseDriver(string Label, double Ratio)
{
    public static CaseDriver Of(string name, long value, long defaultValue, long effective) =>
        new(effective == value
                ? $"{name} {value.ToString(CultureInfo.InvariantCulture)}"
                : $"{name} {value.ToString(CultureInfo.InvariantCulture)} (its longest length {effective.ToString(CultureInfo.InvariantCulture)})",
            effective / (double)Math.Max(1, defaultValue));
}

/// <summary>
/// The size checks of a case, done before anything is allocated. All arithmetic is in 64 bits and
/// saturates, so no size overflows. A case is refused (a <see cref="CliUsageException"/>, exit code
/// 2, naming the option or field that made it too large) when a block-table width or a page id
/// does not fit int32, when one host array would hold more than <see cref="Array.MaxLength"/>
/// elements, or when its host arrays together exceed the host budget
/// (<see cref="HostBudgetBytes"/>: half the memory this process may use); the bench also holds one
/// copy of a case's device buffers to the device's free memory.
/// </summary>
internal static class CaseBudget
{
    /// <summary>The largest index of an int32 block id or block-table width.</summary>
    private const long Int32Limit = int.MaxValue;

    /// <summary>The memory this process may use (the GC's limit: physical memory, or the container's).</summary>
    public static long AvailableBytes => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>The most host memory one case's arrays may take: half of <see cref="AvailableBytes"/>.</summary>
    public static long HostBudgetBytes => AvailableBytes / 2;

    /// <summary>The product of non-negative factors, or long.MaxValue when it overflows.</summary>
    public static long Product(params ReadOnlySpan<long> factors)
    {
        long product = 1;
        foreach (var f in factors)
        {
            if (f <= 0)
            {
                return 0;
            }
            if (product > long.MaxValue / f)
            {
                return long.MaxValue;
            }
            product *= f;
        }
        return product;
    }

    /// <summary>The sum of non-negative terms, or long.MaxValue when it overflows.</summary>
    public static long Sum(IEnumerable<long> terms)
    {
        ArgumentNullException.ThrowIfNull(terms);
        long sum = 0;
        foreach (var t in terms)
        {
            sum = t > long.MaxValue - sum ? long.MaxValue : sum + t;
        }
        return sum;
    }

    /// <summary>The longest length of a case: the given lengths' maximum, else s_k (exact for fixed lengths, the mean for varlen).</summary>
    public static long MaxLength(DecodeCaseSpec spec, IReadOnlyList<int>? lengths) =>
        lengths is { Count: > 0 } ? lengths.Max() : spec.Lengths is { Count: > 0 } given ? given.Max() : Math.Max(0, spec.SeqlenK);

    /// <summary>
    /// <c>flashmla decode</c>: the host arrays of <see cref="DecodeCase{T}"/> and of the decode's
    /// outputs (with their float64 copies). With <paramref name="lengths"/> null the longest length
    /// is taken as s_k, so the check can run before the lengths are drawn.
    /// </summary>
    public static void CheckDecode(DecodeCaseSpec spec, IReadOnlyList<int>? lengths, ShapeNames names, DecodeCaseSpec defaults, long budgetBytes)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(defaults);
        var e = spec.ElementType.SizeInBytes;
        var columns = DecodeCase.TableColumns(spec, MaxLength(spec, lengths));
        var pages = Product(spec.Batch, columns) + spec.ExtraPoolBlocks;
        var d = Drivers(spec, lengths, names, defaults);

        CheckInt32(new CaseArray("block_table", [spec.Batch, columns], sizeof(int), [d.SeqlenK, d.PageSize]), "columns", columns);
        var kCache = new CaseArray("k_cache", [pages, spec.PageBlockSize, spec.KvHeads, spec.HeadDim], e, [d.Batch, d.SeqlenK, d.KvHeads, d.PageSize]);
        CheckInt32(kCache with { Drivers = [d.Batch, d.SeqlenK, d.PageSize] }, "pages (int32 block ids)", pages);

        CaseArray[] arrays =
        [
            Q(spec, d),
            kCache,
            new("k_cache slot map", [pages, spec.PageBlockSize], 1, kCache.Drivers),
            new("block_table", [spec.Batch, columns], sizeof(int), [d.Batch, d.SeqlenK]),
            new("cache_seqlens", [spec.Batch], sizeof(int), [d.Batch]),
            Out(spec, d, e),
            Out(spec, d, sizeof(double)) with { Name = "out (float64 copy)" },
            Lse(spec, d, sizeof(float)),
            Lse(spec, d, sizeof(double)) with { Name = "lse (float64 copy)" },
        ];
        CheckHost(arrays, spec.ElementType, budgetBytes);
    }

    /// <summary>
    /// <c>flashmla decode</c> on a GPU: the case's tensors as the CUDA backend uploads them (q, the
    /// whole cache, the block table, the lengths) and its outputs must fit the device's free memory.
    /// </summary>
    public static void CheckDecodeDevice(DecodeCaseSpec spec, IReadOnlyList<int>? lengths, ShapeNames names, DecodeCaseSpec defaults, long freeBytes)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(defaults);
        var e = spec.ElementType.SizeInBytes;
        var columns = DecodeCase.TableColumns(spec, MaxLength(spec, lengths));
        var pages = Product(spec.Batch, columns) + spec.ExtraPoolBlocks;
        var d = Drivers(spec, lengths, names, defaults);
        CheckDevice(
            [
                Q(spec, d),
                new("k_cache", [pages, spec.PageBlockSize, spec.KvHeads, spec.HeadDim], e, [d.Batch, d.SeqlenK, d.KvHeads, d.PageSize]),
                new("block_table", [spec.Batch, columns], sizeof(int), [d.Batch, d.SeqlenK]),
                new("cache_seqlens", [spec.Batch], sizeof(int), [d.Batch]),
                Out(spec, d, e),
                Lse(spec, d, sizeof(float)),
            ],
            spec.ElementType,
            "the case's device buffers",
            freeBytes);
    }

    /// <summary>
    /// <c>flashmla bench</c>, on the host: the lengths and one copy's block table (the table is as
    /// wide as the longest request's pages), and int32 page ids for one copy of the cache. With
    /// <paramref name="lengths"/> null the longest length is taken as s_k.
    /// </summary>
    public static void CheckBenchHost(DecodeCaseSpec spec, IReadOnlyList<int>? lengths, ShapeNames names, DecodeCaseSpec defaults, long budgetBytes)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(defaults);
        var d = Drivers(spec, lengths, names, defaults);
        var columns = Math.Max(1, PagesOf(MaxLength(spec, lengths), spec.PageBlockSize));
        var pages = PagesPerCopy(spec, lengths);
        CheckInt32(new CaseArray("k_cache", [pages, spec.PageBlockSize, spec.KvHeads, spec.HeadDim], spec.ElementType.SizeInBytes, [d.Batch, d.SeqlenK, d.PageSize]),
            "pages (int32 block ids)", pages);
        CaseArray[] arrays =
        [
            new("block_table", [spec.Batch, columns], sizeof(int), [d.Batch, d.SeqlenK]),
            new("cache_seqlens", [spec.Batch], sizeof(int), [d.Batch]),
        ];
        CheckHost(arrays, spec.ElementType, budgetBytes);
    }

    /// <summary>
    /// <c>flashmla bench</c>, on the device: one copy of the case's buffers (its pages of the KV
    /// cache, q, the output and the LSE) must fit in the device's free memory.
    /// </summary>
    public static void CheckBenchDevice(DecodeCaseSpec spec, IReadOnlyList<int> lengths, ShapeNames names, DecodeCaseSpec defaults, long freeBytes)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(defaults);
        var d = Drivers(spec, lengths, names, defaults);
        var e = spec.ElementType.SizeInBytes;
        CheckDevice(
            [
                new("k_cache", [PagesPerCopy(spec, lengths), spec.PageBlockSize, spec.KvHeads, spec.HeadDim], e, [d.Batch, d.SeqlenK, d.KvHeads, d.PageSize]),
                Q(spec, d),
                Out(spec, d, e),
                Lse(spec, d, sizeof(float)),
            ],
            spec.ElementType,
            "one copy of the case's device buffers",
            freeBytes);
    }

    private static void CheckDevice(IReadOnlyList<CaseArray> arrays, ElementType type, string what, long freeBytes)
    {
        var total = Sum(arrays.Select(a => a.Bytes));
        if (total > freeBytes)
        {
            var largest = arrays.MaxBy(a => a.Bytes)!;
            throw new CliUsageException(
                $"{largest.Culprit()} is too large: {what} need {TableOut.Bytes(total)} " +
                $"({largest.Describe(type.ShortName())}: {TableOut.Bytes(largest.Bytes)}), more than the {TableOut.Bytes(freeBytes)} free on the device");
        }
    }

    /// <summary>ceil(length / page) in 64 bits.</summary>
    public static long PagesOf(long length, int pageBlockSize) => (Math.Max(0, length) + pageBlockSize - 1) / Math.Max(1, pageBlockSize);

    /// <summary>The pages one copy of a bench case's cache holds: the sum of the requests' pages (b·ceil(s_k/page) before the lengths are known).</summary>
    private static long PagesPerCopy(DecodeCaseSpec spec, IReadOnlyList<int>? lengths) =>
        Math.Max(1, lengths is { Count: > 0 }
            ? Sum(lengths.Select(l => PagesOf(l, spec.PageBlockSize)))
            : Product(spec.Batch, PagesOf(MaxLength(spec, null), spec.PageBlockSize)));

    private static CaseArray Q(DecodeCaseSpec spec, ShapeDrivers d) =>
        new("q", [spec.Batch, spec.QueryLength, spec.QueryHeads, spec.HeadDim], spec.ElementType.SizeInBytes, [d.Batch, d.QueryLength, d.QueryHeads]);

    private static CaseArray Out(DecodeCaseSpec spec, ShapeDrivers d, int elementBytes) =>
        new("out", [spec.Batch, spec.QueryLength, spec.QueryHeads, DecodeCaseSpec.HeadDimV], elementBytes, [d.Batch, d.QueryLength, d.QueryHeads]);

    private static CaseArray Lse(DecodeCaseSpec spec, ShapeDrivers d, int elementBytes) =>
        new("lse", [spec.Batch, spec.QueryHeads, spec.QueryLength], elementBytes, [d.Batch, d.QueryLength, d.QueryHeads]);

    private static void CheckInt32(CaseArray array, string what, long value)
    {
        if (value > Int32Limit)
        {
            throw new CliUsageException(
                $"{array.Culprit()} is too large: {array.Name} would have {Str(value)} {what}, more than int32 allows ({Str(Int32Limit)})");
        }
    }

    private static void CheckHost(IReadOnlyList<CaseArray> arrays, ElementType type, long budgetBytes)
    {
        foreach (var a in arrays)
        {
            if (a.Elements > Array.MaxLength)
            {
                throw new CliUsageException(
                    $"{a.Culprit()} is too large: {a.Describe(type.ShortName())} would hold {Str(a.Elements)} elements, " +
                    $"more than one host array can ({Str(Array.MaxLength)})");
            }
        }
        var total = Sum(arrays.Select(a => a.Bytes));
        if (total > budgetBytes)
        {
            var largest = arrays.MaxBy(a => a.Bytes)!;
            throw new CliUsageException(
                $"{largest.Culprit()} is too large: the case's host arrays need {TableOut.Bytes(total)} " +
                $"({largest.Describe(type.ShortName())}: {TableOut.Bytes(largest.Bytes)}), more than the budget of {TableOut.Bytes(budgetBytes)} " +
                $"(half the {TableOut.Bytes(AvailableBytes)} of memory this process may use)");
        }
    }

    private static string Str(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static ShapeDrivers Drivers(DecodeCaseSpec spec, IReadOnlyList<int>? lengths, ShapeNames names, DecodeCaseSpec defaults) => new(
        CaseDriver.Of(names.Batch, spec.Batch, defaults.Batch, spec.Batch),
        CaseDriver.Of(names.SeqlenK, spec.SeqlenK, defaults.SeqlenK, Math.Max(spec.SeqlenK, MaxLength(spec, lengths))),
        CaseDriver.Of(names.QueryLength, spec.QueryLength, defaults.QueryLength, spec.QueryLength),
        CaseDriver.Of(names.QueryHeads, spec.QueryHeads, defaults.QueryHeads, spec.QueryHeads),
        CaseDriver.Of(names.KvHeads, spec.KvHeads, defaults.KvHeads, spec.KvHeads),
        CaseDriver.Of(names.PageSize, spec.PageBlockSize, defaults.PageBlockSize, spec.PageBlockSize));

    private readonly record struct ShapeDrivers(
        CaseDriver Batch, CaseDriver SeqlenK, CaseDriver QueryLength, CaseDriver QueryHeads, CaseDriver KvHeads, CaseDriver PageSize);
}
