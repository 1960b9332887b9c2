using System.Globalization;
using System.Text.Json;
using FlashMla.Cli.Output;
using FlashMla.Tensors;

namespace FlashMla.Cli.Bench;

/// <summary>One KV cache append case of <c>flashmla bench-append</c>: n tokens of h_kv × 576 columns into pages of a size.</summary>
/// <param name="Tokens">n.</param>
/// <param name="KvHeads">h_kv.</param>
/// <param name="PageBlockSize">The cache's page size.</param>
/// <param name="ElementType">bf16 or fp16.</param>
/// <param name="Split">Whether the rows come as a [n, 512] compressed KV and a [n, 64] RoPE key (else one [n, 576] latent).</param>
/// <param name="Seed">The seed of the values and the slots.</param>
internal sealed record AppendBenchCase(int Tokens, int KvHeads, int PageBlockSize, ElementType ElementType, bool Split, int Seed)
{
    /// <summary>The latent row width: 512 compressed-KV columns and the 64-column RoPE key.</summary>
    public const int HeadDim = 576;

    /// <summary>The default token counts: one decode token up to a long prefill.</summary>
    public static IReadOnlyList<int> DefaultTokens { get; } = [1, 16, 128, 1024, 16384, 131072];

    public string Form => Split ? "split" : "latent";

    public string Name => string.Create(
        CultureInfo.InvariantCulture,
        $"append n{Tokens} h_kv{KvHeads} page{PageBlockSize} {ElementType.ShortName()} {Form}");

    /// <summary>Bytes read and written: 2 · n · h_kv · 576 · e (the rows, read once and written once) + 4 · n (the slots).</summary>
    public long Bytes => (2L * Tokens * KvHeads * HeadDim * ElementType.SizeInBytes) + (4L * Tokens);

    /// <summary>Pages of one rotation: enough for n slots.</summary>
    public long PagesPerRotation => Math.Max(1, (Tokens + (long)PageBlockSize - 1) / PageBlockSize);

    /// <summary>Bytes of one rotation: its sources, its pages and its slots.</summary>
    public long BytesPerRotation =>
        ((long)Tokens * KvHeads * HeadDim * ElementType.SizeInBytes) +
        (PagesPerRotation * PageBlockSize * KvHeads * HeadDim * ElementType.SizeInBytes) +
        (4L * Tokens);

    /// <summary>
    /// Slot mappings of all rotations, [R, n] row-major: rotation r's tokens take distinct slots of
    /// its own pages [r · pages, (r + 1) · pages), in random order (as decode tokens of different
    /// requests land on scattered pages).
    /// </summary>
    public int[] SlotMappings(int rotations, Action<Span<int>> shuffle)
    {
        ArgumentNullException.ThrowIfNull(shuffle);
        var slotsPerRotation = PagesPerRotation * PageBlockSize;
        if (rotations * slotsPerRotation > int.MaxValue)
        {
            throw new CliFailureException($"{rotations * slotsPerRotation} slots do not fit int32 slots; use fewer tokens");
        }

        var result = new int[(long)rotations * Tokens];
        var permutation = new int[slotsPerRotation];
        for (var r = 0; r < rotations; r++)
        {
            for (var i = 0; i < permutation.Length; i++)
            {
                permutation[i] = (int)((r * slotsPerRotation) + i);
            }

            shuffle(permutation);
            permutation.AsSpan(0, Tokens).CopyTo(result.AsSpan(r * Tokens, Tokens));
        }

        return result;
    }
}

/// <summary>One append result (one JSON record).</summary>
internal sealed record AppendBenchRecord
{
    public required AppendBenchCase Case { get; init; }

    /// <summary>Median per-call time, each call between two events (host launch cost included).</summary>
    public required double Ms { get; init; }

    /// <summary>µs per append inside a replayed graph (the median over replays of replay time / K).</summary>
    public required double GraphUs { get; init; }

    public required double GraphUsMin { get; init; }
    public required double GraphUsMax { get; init; }
    public required int Rotations { get; init; }
    public required int CallsPerGraph { get; init; }
    public required int GraphReplays { get; init; }
    public required int Iterations { get; init; }
    public required double CopyGBps { get; init; }
    public required int Ctas { get; init; }
    public required int Threads { get; init; }
    public int? SmClockMhz { get; init; }
    public required string Gpu { get; init; }
    public required string Commit { get; init; }

    public double GBps => BenchFormulas.GBps(Case.Bytes, GraphUs * 1e-3);
    public double MsGBps => BenchFormulas.GBps(Case.Bytes, Ms);
    public double? CopyPercent => CopyGBps > 0 ? 100.0 * GBps / CopyGBps : null;

    public void Write(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        writer.WriteString("name", Case.Name);
        writer.WriteString("kind", "append");
        writer.WriteString("impl", BenchRecord.Impl);
        writer.WriteNumber("n", Case.Tokens);
        writer.WriteNumber("h_kv", Case.KvHeads);
        writer.WriteNumber("head_dim", AppendBenchCase.HeadDim);
        writer.WriteNumber("page_block_size", Case.PageBlockSize);
        writer.WriteString("dtype", Case.ElementType.ShortName());
        writer.WriteString("form", Case.Form);
        writer.Number("graph_us", GraphUs);
        writer.Number("graph_us_min", GraphUsMin);
        writer.Number("graph_us_max", GraphUsMax);
        writer.Number("gbps", GBps);
        writer.Number("ms", Ms);
        writer.Number("ms_gbps", MsGBps);
        writer.Number("bytes", Case.Bytes);
        writer.Number("copy_gbps", CopyGBps);
        writer.NumberOrNull("gbps_pct_of_copy", CopyPercent);
        writer.WriteNumber("launches_per_call", 1);
        writer.WriteNumber("ctas", Ctas);
        writer.WriteNumber("threads", Threads);
        writer.WriteNumber("rotations", Rotations);
        writer.WriteNumber("calls_per_graph", CallsPerGraph);
        writer.WriteNumber("graph_replays", GraphReplays);
        writer.WriteNumber("iters", Iterations);
        writer.NumberOrNull("sm_clock_mhz", SmClockMhz);
        writer.WriteString("gpu", Gpu);
        writer.WriteString("commit", Commit);
        writer.WriteNumber("seed", Case.Seed);
        writer.WriteEndObject();
    }
}
