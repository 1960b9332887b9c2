namespace FlashMla.Mla;

/// <summary>The validated dimensions of a decode call.</summary>
/// <param name="Batch">b: the number of requests.</param>
/// <param name="QueryLength">s_q: query tokens per request.</param>
/// <param name="QueryHeads">h_q: query heads.</param>
/// <param name="KvHeads">h_kv: key/value heads (h_q is a multiple of it).</param>
/// <param name="HeadDim">d: the q/k head dimension (576 or 512).</param>
/// <param name="HeadDimV">The value head dimension (512).</param>
/// <param name="NumBlocks">The number of pages in the KV cache.</param>
/// <param name="PageBlockSize">Tokens per page.</param>
/// <param name="MaxBlocksPerSequence">Columns of the block table.</param>
public readonly record struct MlaDecodeShape(
    int Batch,
    int QueryLength,
    int QueryHeads,
    int KvHeads,
    int HeadDim,
    int HeadDimV,
    int NumBlocks,
    int PageBlockSize,
    int MaxBlocksPerSequence)
{
    /// <summary>Query heads per KV head: <c>h_q / h_kv</c>.</summary>
    public int Group => QueryHeads / KvHeads;

    /// <summary>Query rows per KV head and request: <c>s_q · h_q / h_kv</c>.</summary>
    public int RowsPerKvHead => QueryLength * Group;

    /// <summary>The most tokens a request can hold: <c>max_blocks_per_seq · page_block_size</c>.</summary>
    public long Capacity => (long)MaxBlocksPerSequence * PageBlockSize;
}
