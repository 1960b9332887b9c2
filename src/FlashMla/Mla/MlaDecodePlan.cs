using System.Globalization;

namespace FlashMla.Mla;

/// <summary>
/// The per-step state of decodes of one shape (b, s_q, h_q, h_kv), the same on every backend:
/// create it once for a shape (<c>CreatePlan</c>), update it whenever the sequence lengths change
/// (<c>UpdatePlan</c>, which is where the page geometry enters), then decode each layer with it.
/// </summary>
public abstract class MlaDecodePlan
{
    private protected MlaDecodePlan(int batch, int queryLength, int queryHeads, int kvHeads, int numParts)
    {
        Batch = batch;
        QueryLength = queryLength;
        QueryHeads = queryHeads;
        KvHeads = kvHeads;
        NumParts = numParts;
    }

    /// <summary>b.</summary>
    public int Batch { get; }

    /// <summary>s_q.</summary>
    public int QueryLength { get; }

    /// <summary>h_q.</summary>
    public int QueryHeads { get; }

    /// <summary>h_kv.</summary>
    public int KvHeads { get; }

    /// <summary>h_q / h_kv.</summary>
    public int Group => QueryHeads / KvHeads;

    /// <summary>Query rows per KV head: s_q · h_q / h_kv.</summary>
    public int RowsPerKvHead => QueryLength * Group;

    /// <summary>The number of parts of the split-KV schedule.</summary>
    public int NumParts { get; }

    /// <summary>Whether <c>UpdatePlan</c> has been called (on CUDA: enqueued) at least once.</summary>
    public bool IsScheduled => Geometry is not null;

    /// <summary>Tokens per page the last update was for (0 before the first).</summary>
    public int PageBlockSize => Geometry?.PageBlockSize ?? 0;

    /// <summary>Block-table columns the last update was for (0 before the first).</summary>
    public int MaxBlocksPerSequence => Geometry?.MaxBlocksPerSequence ?? 0;

    /// <summary>The KV capacity in tokens (max_blocks_per_seq · page_block_size) of the last update.</summary>
    public long ScheduledCapacity => Geometry?.Capacity ?? 0;

    /// <summary>The page geometry of the last update, or null.</summary>
    private protected abstract PlanGeometry? Geometry { get; }

    /// <summary>Formats as "plan b=… s_q=… h_q=… h_kv=… parts=…".</summary>
    /// <returns>The text.</returns>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"plan {Describe()} parts={NumParts}");

    /// <summary>Checks the arguments of <c>CreatePlan</c>, the same on every backend.</summary>
    internal static void ValidateDimensions(int batch, int queryLength, int queryHeads, int kvHeads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(queryLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(queryHeads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvHeads, 1);
        if (queryHeads % kvHeads != 0)
        {
            throw new ArgumentException($"h_q = {queryHeads} must be a multiple of h_kv = {kvHeads}.", nameof(kvHeads));
        }
    }

    /// <summary>
    /// Checks that a decode call fits the plan: its dimensions, that it was updated, and that the
    /// cache's page size and the block table's width are the ones it was updated for. Raises
    /// <see cref="ArgumentException"/> with ParamName <c>plan</c>.
    /// </summary>
    /// <param name="shape">The call's validated shape.</param>
    internal void CheckMatches(MlaDecodeShape shape)
    {
        if (Batch != shape.Batch || QueryLength != shape.QueryLength || QueryHeads != shape.QueryHeads || KvHeads != shape.KvHeads)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"The plan was created for {Describe()}; the tensors have b={shape.Batch}, s_q={shape.QueryLength}, h_q={shape.QueryHeads}, h_kv={shape.KvHeads}."),
                "plan");
        }

        var geometry = Geometry ?? throw new ArgumentException("The plan has no schedule yet; call UpdatePlan first.", "plan");
        if (geometry.PageBlockSize != shape.PageBlockSize || geometry.MaxBlocksPerSequence != shape.MaxBlocksPerSequence)
        {
            throw new ArgumentException(
                string.Create(
                    CultureInfo.InvariantCulture,
                    $"The plan was updated for page_block_size {geometry.PageBlockSize} and max_blocks_per_seq {geometry.MaxBlocksPerSequence} (a capacity of {geometry.Capacity} tokens); kCache has page_block_size {shape.PageBlockSize} and blockTable {shape.MaxBlocksPerSequence} columns ({shape.Capacity} tokens). Call UpdatePlan with the cache's geometry."),
                "plan");
        }
    }

    /// <summary>"b=…, s_q=…, h_q=…, h_kv=…".</summary>
    internal string Describe() =>
        string.Create(CultureInfo.InvariantCulture, $"b={Batch}, s_q={QueryLength}, h_q={QueryHeads}, h_kv={KvHeads}");
}

/// <summary>The page geometry a plan is updated for: tokens per page and block-table columns.</summary>
/// <param name="PageBlockSize">Tokens per page (≥ 1).</param>
/// <param name="MaxBlocksPerSequence">Block-table columns (≥ 1).</param>
internal sealed record PlanGeometry(int PageBlockSize, int MaxBlocksPerSequence)
{
    /// <summary>The most tokens a request can hold.</summary>
    public long Capacity => (long)MaxBlocksPerSequence * PageBlockSize;

    /// <summary>Checks the geometry arguments of <c>UpdatePlan</c>, the same on every backend.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is below 1, or the capacity exceeds int.MaxValue tokens.</exception>
    public static PlanGeometry Validate(int maxBlocksPerSequence, int pageBlockSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBlocksPerSequence, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageBlockSize, 1);
        var geometry = new PlanGeometry(pageBlockSize, maxBlocksPerSequence);
        if (geometry.Capacity > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(maxBlocksPerSequence), $"max_blocks_per_seq × page_block_size = {geometry.Capacity} exceeds {int.MaxValue} tokens.");
        }

        return geometry;
    }
}
