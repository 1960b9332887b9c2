namespace FlashMla.Mla.Cpu;

/// <summary>
/// The buffers a <see cref="CpuMlaDecoder"/> reuses from call to call: the split-KV workspace,
/// the lengths, one <see cref="TileScratch"/> per worker and the call state of each element-type
/// combination. Buffers only grow, so a steady stream of decodes of one shape allocates nothing.
/// </summary>
internal sealed class CpuDecodeWorkspace
{
    private readonly TileScratch?[] _workers;
    private object? _run;

    public CpuDecodeWorkspace(int maxDegreeOfParallelism, int vectorBits)
    {
        Workers = maxDegreeOfParallelism > 0 ? maxDegreeOfParallelism : Environment.ProcessorCount;
        VectorBits = vectorBits;
        ParallelOptions = new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism };
        _workers = new TileScratch?[Workers];
    }

    /// <summary>The most workers a call uses.</summary>
    public int Workers { get; }

    /// <summary>The SIMD width of the tile kernels: 128, 256 or 512 bits.</summary>
    public int VectorBits { get; }

    public ParallelOptions ParallelOptions { get; }

    /// <summary>The lengths of the call, [b].</summary>
    public int[] Seqlens { get; private set; } = [];

    /// <summary>The first split slot of each request, [b].</summary>
    public int[] SlotBase { get; private set; } = [];

    /// <summary>Partial outputs of split requests, [slots, h_kv, rows, 512].</summary>
    public float[] OAccum { get; private set; } = [];

    /// <summary>Partial LSEs (log2) of split requests, [slots, h_kv, rows].</summary>
    public float[] LseAccum { get; private set; } = [];

    /// <summary>Reads a call's lengths into <see cref="Seqlens"/>.</summary>
    public Span<int> TakeSeqlens(int batch)
    {
        if (Seqlens.Length < batch)
        {
            Seqlens = new int[batch];
            SlotBase = new int[batch];
        }

        return Seqlens.AsSpan(0, batch);
    }

    /// <summary>Makes room for <paramref name="rows"/> partial rows of 512 values.</summary>
    public void EnsureAccumulators(long rows)
    {
        if (rows * CpuMlaDecoder.ValueDim > Array.MaxLength)
        {
            throw new InvalidOperationException(
                $"The split-KV workspace would need {rows * CpuMlaDecoder.ValueDim} floats; use a schedule with fewer parts.");
        }

        if (LseAccum.Length < rows)
        {
            OAccum = new float[rows * CpuMlaDecoder.ValueDim];
            LseAccum = new float[rows];
        }
    }

    /// <summary>The scratch of worker <paramref name="worker"/>, sized for <paramref name="rowsPad"/> rows.</summary>
    public TileScratch Scratch(int worker, int rowsPad)
    {
        var scratch = _workers[worker];
        if (scratch is null || scratch.RowsPad < rowsPad)
        {
            scratch = new TileScratch(Math.Max(rowsPad, scratch?.RowsPad ?? 0));
            _workers[worker] = scratch;
        }

        return scratch;
    }

    /// <summary>The reusable call state for one combination of element types.</summary>
    public CpuDecodeRun<TQ, TKv, TOut> RunFor<TQ, TKv, TOut>()
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        if (_run is not CpuDecodeRun<TQ, TKv, TOut> run)
        {
            run = new CpuDecodeRun<TQ, TKv, TOut>(this);
            _run = run;
        }

        return run;
    }
}

/// <summary>One worker's tile buffers (see <see cref="AttentionTile"/> for the layouts).</summary>
internal sealed class TileScratch
{
    public TileScratch(int rowsPad)
    {
        RowsPad = rowsPad;
        Qt = new float[AttentionTile.KeyStride * rowsPad];
        Ot = new float[AttentionTile.PaddedValueDim * rowsPad];
        Scores = new float[AttentionTile.TileKeys * rowsPad];
        Keys = new float[AttentionTile.TileKeys * AttentionTile.KeyStride];
        Row = new float[AttentionTile.KeyStride];
        RowMax = new float[rowsPad];
        RowSum = new float[rowsPad];
        TileMax = new float[rowsPad];
        Base = new float[rowsPad];
        Correction = new float[rowsPad];
        Visible = new int[rowsPad];
    }

    /// <summary>Rows (padded) the buffers hold.</summary>
    public int RowsPad { get; }

    /// <summary>Qᵀ, [d][rowsPad].</summary>
    public float[] Qt { get; }

    /// <summary>Oᵀ, [516][rowsPad].</summary>
    public float[] Ot { get; }

    /// <summary>Scores, then probabilities, [48][rowsPad].</summary>
    public float[] Scores { get; }

    /// <summary>The widened keys of a tile, [48][576].</summary>
    public float[] Keys { get; }

    /// <summary>One widened row (a query row, an output row).</summary>
    public float[] Row { get; }

    public float[] RowMax { get; }

    public float[] RowSum { get; }

    public float[] TileMax { get; }

    public float[] Base { get; }

    public float[] Correction { get; }

    public int[] Visible { get; }
}
