using System.Numerics.Tensors;
using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Mla.Cpu;

/// <summary>
/// The state of a <see cref="CpuMlaDecoder"/> call for one combination of element types, kept in
/// the decoder's workspace and reused (its worker delegates are created once).
/// </summary>
/// <remarks>
/// A call runs in two phases, each a pool of workers pulling work items from a shared counter:
/// the (part, KV head) tasks of the schedule, then the combine of each split (request, KV head).
/// Every item writes its own outputs, and the arithmetic of an item does not depend on which
/// worker runs it, so results do not depend on the number of threads.
/// </remarks>
internal sealed class CpuDecodeRun<TQ, TKv, TOut>
    where TQ : unmanaged
    where TKv : unmanaged
    where TOut : unmanaged
{
    private static readonly float Ln2 = MathF.Log(2f);
    private static readonly float Log2E = 1f / MathF.Log(2f);

    private readonly CpuDecodeWorkspace _workspace;
    private readonly Action<int> _partWorker;
    private readonly Action<int> _combineWorker;

    private MlaDecodeShape _shape;
    private bool _causal;
    private float _scaleLog2;
    private HostTensor<TQ>? _q;
    private HostTensor<TKv>? _kCache;
    private HostTensor<int>? _blockTable;
    private DecodeSchedule? _schedule;
    private HostTensor<TOut>? _output;
    private HostTensor<float>? _lse;
    private int _rows;
    private int _rowsPad;
    private int _items;
    private int _next;

    public CpuDecodeRun(CpuDecodeWorkspace workspace)
    {
        _workspace = workspace;
        _partWorker = RunParts;
        _combineWorker = RunCombines;
    }

    public void Execute(
        MlaDecodeShape shape,
        MlaDecodeOptions options,
        HostTensor<TQ> q,
        HostTensor<TKv> kCache,
        HostTensor<int> blockTable,
        DecodeSchedule schedule,
        HostTensor<TOut> output,
        HostTensor<float> lse)
    {
        _shape = shape;
        _causal = options.Causal;
        _scaleLog2 = options.GetSoftmaxScale(shape.HeadDim) * Log2E;
        _q = q;
        _kCache = kCache;
        _blockTable = blockTable;
        _schedule = schedule;
        _output = output;
        _lse = lse;
        _rows = shape.RowsPerKvHead;
        var lanes = _workspace.VectorBits / 32;
        _rowsPad = (_rows + lanes - 1) / lanes * lanes;

        var slotBase = _workspace.SlotBase;
        long slots = 0;
        var anySplit = false;
        for (var i = 0; i < shape.Batch; i++)
        {
            slotBase[i] = (int)slots;
            var count = schedule.SplitCount(i);
            if (count > 1)
            {
                slots += count;
                anySplit = true;
            }
        }

        _workspace.EnsureAccumulators(slots * shape.KvHeads * _rows);
        try
        {
            RunPhase(schedule.NumParts * shape.KvHeads, _partWorker);
            if (anySplit)
            {
                RunPhase(shape.Batch * shape.KvHeads, _combineWorker);
            }
        }
        finally
        {
            // Hold no caller memory between calls.
            _q = null;
            _kCache = null;
            _blockTable = null;
            _schedule = null;
            _output = null;
            _lse = null;
        }
    }

    private void RunPhase(int items, Action<int> worker)
    {
        _items = items;
        _next = 0;
        var workers = Math.Min(_workspace.Workers, items);
        if (workers <= 1)
        {
            worker(0);
        }
        else
        {
            Parallel.For(0, workers, _workspace.ParallelOptions, worker);
        }
    }

    private bool TryTake(out int item)
    {
        item = Interlocked.Increment(ref _next) - 1;
        return item < _items;
    }

    private void RunParts(int worker)
    {
        var scratch = _workspace.Scratch(worker, _rowsPad);
        var kvHeads = _shape.KvHeads;
        while (TryTake(out var task))
        {
            switch (_workspace.VectorBits)
            {
                case 512:
                    RunPart<SimdFloat512>(task / kvHeads, task % kvHeads, scratch);
                    break;
                case 256:
                    RunPart<SimdFloat256>(task / kvHeads, task % kvHeads, scratch);
                    break;
                default:
                    RunPart<SimdFloat128>(task / kvHeads, task % kvHeads, scratch);
                    break;
            }
        }
    }

    private void RunCombines(int worker)
    {
        var scratch = _workspace.Scratch(worker, _rowsPad);
        var kvHeads = _shape.KvHeads;
        while (TryTake(out var item))
        {
            var request = item / kvHeads;
            if (_schedule!.SplitCount(request) > 1)
            {
                Combine(request, item % kvHeads, scratch.Row.AsSpan(0, CpuMlaDecoder.ValueDim));
            }
        }
    }

    private void RunPart<V>(int partIndex, int kvHead, TileScratch scratch)
        where V : struct, ISimdFloat<V>
    {
        var schedule = _schedule!;
        var part = schedule.Parts[partIndex];
        if (part.BeginRequest >= _shape.Batch)
        {
            return;
        }

        for (var request = part.BeginRequest; request <= part.EndRequest; request++)
        {
            var isBegin = request == part.BeginRequest;
            var isEnd = request == part.EndRequest;
            var blockCount = schedule.BlockCounts[request];
            var beginBlock = isBegin ? part.BeginBlock : 0;
            var endBlock = isEnd ? part.EndBlock : blockCount;
            var isSplit = (isBegin ? part.FirstRequestIsSplit : isEnd ? part.LastRequestIsSplit : 0) != 0;
            var splitIndex = isBegin ? part.BeginSplit : 0;
            ProcessPiece<V>(request, kvHead, beginBlock, endBlock, isSplit, splitIndex, scratch);
        }
    }

    /// <summary>Online softmax over blocks [beginBlock, endBlock) of one request for all rows of one KV head.</summary>
    private void ProcessPiece<V>(int request, int kvHead, int beginBlock, int endBlock, bool isSplit, int splitIndex, TileScratch scratch)
        where V : struct, ISimdFloat<V>
    {
        var d = _shape.HeadDim;
        var rows = _rows;
        var rowsPad = _rowsPad;
        var group = _shape.Group;
        var seqlen = _workspace.Seqlens[request];
        var sq = _shape.QueryLength;

        // Qᵀ: the rows of this KV head, widened once per piece; padding rows are zero.
        var qt = scratch.Qt.AsSpan(0, d * rowsPad);
        qt.Clear();
        var row = scratch.Row.AsSpan(0, d);
        var qLayout = _q!.Layout;
        var qSpan = _q.Span;
        var visible = scratch.Visible.AsSpan(0, rowsPad);
        var maxVisible = 0;
        for (var r = 0; r < rows; r++)
        {
            var token = r / group;
            var head = (kvHead * group) + (r % group);
            FloatConversions.ToSingle<TQ>(qSpan.Slice((int)qLayout.OffsetOf(request, token, head, 0), d), row);
            for (var c = 0; c < d; c++)
            {
                qt[(c * rowsPad) + r] = row[c];
            }

            visible[r] = _causal ? Math.Clamp(seqlen - sq + token + 1, 0, seqlen) : seqlen;
            maxVisible = Math.Max(maxVisible, visible[r]);
        }

        // Padding rows see what the last row sees, so that they never force a rescale.
        visible[rows..].Fill(visible[rows - 1]);

        var rowMax = scratch.RowMax.AsSpan(0, rowsPad);
        var rowSum = scratch.RowSum.AsSpan(0, rowsPad);
        var tileMax = scratch.TileMax.AsSpan(0, rowsPad);
        var baseMax = scratch.Base.AsSpan(0, rowsPad);
        var correction = scratch.Correction.AsSpan(0, rowsPad);
        var ot = scratch.Ot.AsSpan(0, AttentionTile.PaddedValueDim * rowsPad);
        rowMax.Fill(float.NegativeInfinity);
        rowSum.Clear();
        ot.Clear();

        var tokenBegin = beginBlock * DecodeSchedule.BlockSizeN;
        var tokenEnd = Math.Min(Math.Min(endBlock * DecodeSchedule.BlockSizeN, seqlen), maxVisible);
        var kLayout = _kCache!.Layout;
        var kSpan = _kCache.Span;
        var kBlockStride = kLayout.Strides[0];
        var kRowStride = kLayout.Strides[1];
        var kHeadOffset = kvHead * kLayout.Strides[2];
        var pageSize = _shape.PageBlockSize;
        var btLayout = _blockTable!.Layout;
        var btSpan = _blockTable.Span;
        var btRow = request * btLayout.Strides[0];
        var btCol = btLayout.Strides[1];
        var keys = scratch.Keys.AsSpan();
        var accumulated = false;

        for (var tileStart = tokenBegin; tileStart < tokenEnd; tileStart += AttentionTile.TileKeys)
        {
            var n = Math.Min(AttentionTile.TileKeys, tokenEnd - tileStart);
            var nPad = (n + AttentionTile.KeyPadding - 1) / AttentionTile.KeyPadding * AttentionTile.KeyPadding;

            // Gather and widen the tile's keys through the block table, once for every row.
            for (var j = 0; j < n; j++)
            {
                var t = tileStart + j;
                var page = btSpan[(int)(btRow + ((t / pageSize) * btCol))];
                var offset = (page * kBlockStride) + ((t % pageSize) * kRowStride) + kHeadOffset;
                FloatConversions.ToSingle<TKv>(kSpan.Slice((int)offset, d), keys.Slice(j * AttentionTile.KeyStride, d));
            }

            keys[(n * AttentionTile.KeyStride)..(nPad * AttentionTile.KeyStride)].Clear();

            // S = K·Qᵀ, scaled to the log2 domain, and each row's maximum; keys a row does not see
            // are -∞ (then the maxima are taken again).
            var s = scratch.Scores.AsSpan(0, nPad * rowsPad);
            AttentionTile.Scores<V>(qt, d, rowsPad, keys, nPad, s);
            AttentionTile.ScaleAndMax<V>(s, rowsPad, nPad, _scaleLog2, tileMax);
            var masked = false;
            for (var r = 0; r < rowsPad; r++)
            {
                for (var j = Math.Clamp(visible[r] - tileStart, 0, n); j < nPad; j++)
                {
                    s[(j * rowsPad) + r] = float.NegativeInfinity;
                    masked = true;
                }
            }

            if (masked)
            {
                AttentionTile.ScaleAndMax<V>(s, rowsPad, nPad, 1f, tileMax);
            }

            // Online softmax, all rows at once: new maxima, the correction of what was summed so
            // far, and the probabilities relative to the new maxima.
            var rescale = false;
            for (var r = 0; r < rowsPad; r++)
            {
                var oldMax = rowMax[r];
                var newMax = Math.Max(oldMax, tileMax[r]);
                baseMax[r] = newMax == float.NegativeInfinity ? 0f : newMax;
                correction[r] = oldMax - baseMax[r];
                rescale |= oldMax != float.NegativeInfinity && newMax != oldMax;
                rowMax[r] = newMax;
            }

            TensorPrimitives.Exp2(correction, correction);
            AttentionTile.SubtractRows<V>(s, rowsPad, nPad, baseMax);
            TensorPrimitives.Exp2(s, s);
            AttentionTile.UpdateSums<V>(s, rowsPad, nPad, correction, rowSum);
            if (accumulated && rescale)
            {
                AttentionTile.Rescale<V>(ot, rowsPad, correction);
            }

            // Oᵀ += Vᵀ·P.
            AttentionTile.AccumulateValues<V>(s, rowsPad, keys, nPad, ot);
            accumulated = true;
        }

        // Epilogue: final output, or a normalised partial result in the workspace.
        var outputLayout = _output!.Layout;
        var outputSpan = _output.Span;
        var lseLayout = _lse!.Layout;
        var lseSpan = _lse.Span;
        var slot = _workspace.SlotBase[request] + splitIndex;
        var outRow = scratch.Row.AsSpan(0, CpuMlaDecoder.ValueDim);
        for (var r = 0; r < rows; r++)
        {
            var token = r / group;
            var head = (kvHead * group) + (r % group);
            var sum = rowSum[r];
            var inverse = sum > 0f ? 1f / sum : 0f;
            for (var v = 0; v < outRow.Length; v++)
            {
                outRow[v] = ot[(v * rowsPad) + r] * inverse;
            }

            var lse2 = sum > 0f ? MathF.Log2(sum) + rowMax[r] : float.NegativeInfinity;
            if (isSplit)
            {
                var index = (((long)slot * _shape.KvHeads) + kvHead) * rows + r;
                outRow.CopyTo(_workspace.OAccum.AsSpan((int)(index * CpuMlaDecoder.ValueDim), CpuMlaDecoder.ValueDim));
                _workspace.LseAccum[index] = lse2;
            }
            else
            {
                var offset = (int)outputLayout.OffsetOf(request, token, head, 0);
                FloatConversions.FromSingle<TOut>(outRow, outputSpan.Slice(offset, CpuMlaDecoder.ValueDim));
                lseSpan[(int)lseLayout.OffsetOf(request, head, token)] =
                    sum > 0f ? lse2 * Ln2 : float.PositiveInfinity;
            }
        }
    }

    /// <summary>Merges the partial results of a split request for one KV head.</summary>
    private void Combine(int request, int kvHead, Span<float> row)
    {
        var splits = _schedule!.SplitCount(request);
        var rows = _rows;
        var group = _shape.Group;
        var outputLayout = _output!.Layout;
        var outputSpan = _output.Span;
        var lseLayout = _lse!.Layout;
        var lseSpan = _lse.Span;
        var oAccum = _workspace.OAccum;
        var lseAccum = _workspace.LseAccum;
        for (var r = 0; r < rows; r++)
        {
            var max = float.NegativeInfinity;
            for (var s = 0; s < splits; s++)
            {
                max = Math.Max(max, lseAccum[Index(request, s, kvHead, r)]);
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
                    sum += MathF.Pow(2f, lseAccum[Index(request, s, kvHead, r)] - max);
                }

                var global = MathF.Log2(sum) + max;
                for (var s = 0; s < splits; s++)
                {
                    var index = Index(request, s, kvHead, r);
                    var weight = MathF.Pow(2f, lseAccum[index] - global);
                    if (weight > 0f)
                    {
                        TensorPrimitives.MultiplyAdd(
                            oAccum.AsSpan((int)(index * CpuMlaDecoder.ValueDim), CpuMlaDecoder.ValueDim), weight, row, row);
                    }
                }

                lseNatural = global * Ln2;
            }

            var offset = (int)outputLayout.OffsetOf(request, token, head, 0);
            FloatConversions.FromSingle<TOut>(row, outputSpan.Slice(offset, CpuMlaDecoder.ValueDim));
            lseSpan[(int)lseLayout.OffsetOf(request, head, token)] = lseNatural;
        }
    }

    private long Index(int request, int split, int kvHead, int row) =>
        ((((long)_workspace.SlotBase[request] + split) * _shape.KvHeads) + kvHead) * _rows + row;
}
