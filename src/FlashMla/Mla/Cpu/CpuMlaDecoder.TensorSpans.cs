using System.Numerics.Tensors;
using FlashMla.Numerics;

namespace FlashMla.Mla.Cpu;

/// <summary>
/// Entry points over <c>System.Numerics.Tensors</c> spans (what ONNX Runtime and other libraries
/// hand out). Each span is pinned for the call and viewed in place as a host tensor with its own
/// lengths and strides, so nothing is copied; validation and results are those of the
/// <see cref="FlashMla.Tensors.HostTensor{T}"/> overloads, with the same parameter names.
/// </summary>
public sealed partial class CpuMlaDecoder
{
    /// <summary>Decodes in one call over tensor spans (see the <see cref="FlashMla.Tensors.HostTensor{T}"/> overload).</summary>
    /// <typeparam name="TQ">q's element type: <see cref="BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <typeparam name="TKv">The cache's element type.</typeparam>
    /// <typeparam name="TOut">The output's element type.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d], d ∈ {576, 512}; the last dimension contiguous.</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d]; V is its first 512 columns.</param>
    /// <param name="blockTable">Page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">Sequence lengths, [b].</param>
    /// <param name="output">Receives the attention output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">Receives the natural-log log-sum-exp of the scaled scores, [b, h_q, s_q].</param>
    /// <param name="options">Options; null means the defaults.</param>
    /// <exception cref="ArgumentException">An argument is invalid (see <see cref="MlaDecodeValidation"/>), a
    /// stride is negative or a span covers more than <see cref="int.MaxValue"/> elements; ParamName names
    /// the argument and nothing has been written.</exception>
    public void Decode<TQ, TKv, TOut>(
        ReadOnlyTensorSpan<TQ> q,
        ReadOnlyTensorSpan<TKv> kCache,
        ReadOnlyTensorSpan<int> blockTable,
        ReadOnlyTensorSpan<int> cacheSeqlens,
        TensorSpan<TOut> output,
        TensorSpan<float> lse,
        MlaDecodeOptions? options = null)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
        => DecodeSpans(q, kCache, blockTable, cacheSeqlens, null, output, lse, options);

    /// <summary>Decodes one layer over tensor spans with a plan updated for these lengths and this page geometry.</summary>
    /// <typeparam name="TQ">q's element type: <see cref="BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <typeparam name="TKv">The cache's element type.</typeparam>
    /// <typeparam name="TOut">The output's element type.</typeparam>
    /// <param name="q">Queries, [b, s_q, h_q, d].</param>
    /// <param name="kCache">Paged KV cache, [num_blocks, page_block_size, h_kv, d] (a dense cache of <typeparamref name="TKv"/>).</param>
    /// <param name="blockTable">Page ids, [b, max_blocks_per_seq].</param>
    /// <param name="cacheSeqlens">Sequence lengths, [b]; the ones <see cref="UpdatePlan(CpuDecodePlan, ReadOnlyTensorSpan{int}, int, int)"/> saw.</param>
    /// <param name="plan">The plan.</param>
    /// <param name="output">Receives the output, [b, s_q, h_q, 512].</param>
    /// <param name="lse">Receives the LSE, [b, h_q, s_q].</param>
    /// <param name="options">Options; null means the defaults.</param>
    /// <exception cref="ArgumentException">An argument is invalid, or the plan does not fit the call
    /// (ParamName <c>plan</c>); nothing has been written.</exception>
    public void Decode<TQ, TKv, TOut>(
        ReadOnlyTensorSpan<TQ> q,
        ReadOnlyTensorSpan<TKv> kCache,
        ReadOnlyTensorSpan<int> blockTable,
        ReadOnlyTensorSpan<int> cacheSeqlens,
        CpuDecodePlan plan,
        TensorSpan<TOut> output,
        TensorSpan<float> lse,
        MlaDecodeOptions? options = null)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
        => DecodeSpans(q, kCache, blockTable, cacheSeqlens, plan, output, lse, options);

    /// <summary>Pins the spans and decodes their host-tensor views in place, with <paramref name="plan"/> or in one call.</summary>
    private unsafe void DecodeSpans<TQ, TKv, TOut>(
        ReadOnlyTensorSpan<TQ> q,
        ReadOnlyTensorSpan<TKv> kCache,
        ReadOnlyTensorSpan<int> blockTable,
        ReadOnlyTensorSpan<int> cacheSeqlens,
        CpuDecodePlan? plan,
        TensorSpan<TOut> output,
        TensorSpan<float> lse,
        MlaDecodeOptions? options)
        where TQ : unmanaged
        where TKv : unmanaged
        where TOut : unmanaged
    {
        fixed (TQ* pq = q)
        fixed (TKv* pk = kCache)
        fixed (int* pt = blockTable)
        fixed (int* ps = cacheSeqlens)
        fixed (TOut* po = output)
        fixed (float* pl = lse)
        {
            var qView = TensorSpanViews.Wrap(pq, q.Lengths, q.Strides, nameof(q));
            var kView = TensorSpanViews.Wrap(pk, kCache.Lengths, kCache.Strides, nameof(kCache));
            var tableView = TensorSpanViews.Wrap(pt, blockTable.Lengths, blockTable.Strides, nameof(blockTable));
            var seqlensView = TensorSpanViews.Wrap(ps, cacheSeqlens.Lengths, cacheSeqlens.Strides, nameof(cacheSeqlens));
            var outputView = TensorSpanViews.Wrap(po, output.Lengths, output.Strides, nameof(output));
            var lseView = TensorSpanViews.Wrap(pl, lse.Lengths, lse.Strides, nameof(lse));
            if (plan is null)
            {
                Decode(qView, kView, tableView, seqlensView, outputView, lseView, options);
            }
            else
            {
                Decode(qView, kView, tableView, seqlensView, plan, outputView, lseView, options);
            }
        }
    }

    /// <summary>Updates a plan for a step's sequence lengths given as a tensor span (see the host-tensor overload).</summary>
    /// <param name="plan">The plan.</param>
    /// <param name="cacheSeqlens">Sequence lengths, [b] (any stride), each in <c>[0, max_blocks_per_seq · page_block_size]</c>.</param>
    /// <param name="maxBlocksPerSequence">Columns of the block table (≥ 1).</param>
    /// <param name="pageBlockSize">Tokens per page (≥ 1).</param>
    /// <exception cref="ArgumentException">A length is out of range, or the span does not have the plan's batch.</exception>
    public unsafe void UpdatePlan(CpuDecodePlan plan, ReadOnlyTensorSpan<int> cacheSeqlens, int maxBlocksPerSequence, int pageBlockSize)
    {
        fixed (int* ps = cacheSeqlens)
        {
            UpdatePlan(plan, TensorSpanViews.Wrap(ps, cacheSeqlens.Lengths, cacheSeqlens.Strides, nameof(cacheSeqlens)), maxBlocksPerSequence, pageBlockSize);
        }
    }

    /// <summary>Computes a schedule for this decoder from sequence lengths given as a tensor span.</summary>
    /// <param name="cacheSeqlens">Sequence lengths, [b] (any stride), each ≥ 0.</param>
    /// <param name="queryLength">s_q (≥ 1).</param>
    /// <param name="queryHeads">h_q (≥ 1).</param>
    /// <param name="kvHeads">h_kv (≥ 1, divides h_q).</param>
    /// <returns>The schedule.</returns>
    /// <exception cref="ArgumentException">The span or a count is invalid.</exception>
    public unsafe DecodeSchedule CreateSchedule(ReadOnlyTensorSpan<int> cacheSeqlens, int queryLength, int queryHeads, int kvHeads)
    {
        fixed (int* ps = cacheSeqlens)
        {
            return CreateSchedule(TensorSpanViews.Wrap(ps, cacheSeqlens.Lengths, cacheSeqlens.Strides, nameof(cacheSeqlens)), queryLength, queryHeads, kvHeads);
        }
    }
}
