namespace FlashMla.Cli.Inputs;

/// <summary>
/// Host inputs of one decode step. Element data is kept as raw 16-bit patterns (bf16 or fp16,
/// see <see cref="DecodeCaseSpec.Dtype"/>) so that it can be viewed as the library's element types.
/// </summary>
internal sealed class DecodeInputs
{
    public required DecodeCaseSpec Spec { get; init; }
    public required int NumBlocks { get; init; }
    public required int MaxBlocksPerSeq { get; init; }
    /// <summary>q [b, s_q, h_q, d].</summary>
    public required ushort[] Q { get; init; }
    /// <summary>k_cache [num_blocks, page_block_size, h_kv, d].</summary>
    public required ushort[] KCache { get; init; }
    /// <summary>block_table [b, max_blocks_per_seq].</summary>
    public required int[] BlockTable { get; init; }
    /// <summary>cache_seqlens [b].</summary>
    public required int[] Seqlens { get; init; }

    public long[] QShape => [Spec.Batch, Spec.SeqQ, Spec.HeadsQ, Spec.HeadDim];
    public long[] KShape => [NumBlocks, Spec.PageSize, Spec.HeadsKv, Spec.HeadDim];
    public long[] BlockTableShape => [Spec.Batch, MaxBlocksPerSeq];
    public long[] OutputShape => [Spec.Batch, Spec.SeqQ, Spec.HeadsQ, DecodeCaseSpec.HeadDimV];
    public long[] LseShape => [Spec.Batch, Spec.HeadsQ, Spec.SeqQ];

    public long OutputLength => (long)Spec.Batch * Spec.SeqQ * Spec.HeadsQ * DecodeCaseSpec.HeadDimV;
    public long LseLength => (long)Spec.Batch * Spec.HeadsQ * Spec.SeqQ;

    public double MeanSeqLen => Seqlens.Length == 0 ? 0 : Seqlens.Average(s => (double)s);
}

/// <summary>Outputs of one decode step, widened to float. Output [b, s_q, h_q, 512], lse [b, h_q, s_q].</summary>
internal sealed class DecodeOutputs
{
    public required float[] Output { get; init; }
    public required float[] Lse { get; init; }
    /// <summary>Wall or device time of the decode call, in milliseconds.</summary>
    public double ElapsedMs { get; init; }

    /// <summary>Σ|out| in double.</summary>
    public double AbsSum()
    {
        double sum = 0;
        foreach (var v in Output)
        {
            sum += Math.Abs((double)v);
        }
        return sum;
    }

    /// <summary>Σ lse over the finite entries, in double.</summary>
    public double FiniteLseSum()
    {
        double sum = 0;
        foreach (var v in Lse)
        {
            if (float.IsFinite(v))
            {
                sum += v;
            }
        }
        return sum;
    }

    public int NonFiniteOutputCount() => Output.Count(v => !float.IsFinite(v));
}
