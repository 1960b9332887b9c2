namespace FlashMla.Mla;

/// <summary>Options of an MLA decode call (<c>flash_mla_with_kvcache</c>'s keyword arguments).</summary>
public sealed record class MlaDecodeOptions
{
    /// <summary>
    /// The factor applied to q·k before the softmax; <see langword="null"/> means <c>head_dim^−0.5</c>
    /// (with head_dim the q/k dimension, e.g. 576). Must be finite when set.
    /// </summary>
    public float? SoftmaxScale { get; init; }

    /// <summary>
    /// Causal masking for multi-token queries: query token <c>i</c> of <c>s_q</c> sees keys
    /// <c>0 … seqlen − s_q + i</c>. Has no effect when <c>s_q == 1</c>.
    /// </summary>
    public bool Causal { get; init; }

    /// <summary>The value head dimension: the first <c>HeadDimV</c> columns of K are V. Must be 512.</summary>
    public int HeadDimV { get; init; } = 512;

    /// <summary>The effective softmax scale: <see cref="SoftmaxScale"/>, or <c>headDim^−0.5</c> when it is null.</summary>
    /// <param name="headDim">The q/k head dimension (576 or 512).</param>
    /// <returns>The scale applied to q·k.</returns>
    public float GetSoftmaxScale(int headDim) => SoftmaxScale ?? (float)(1.0 / Math.Sqrt(headDim));
}
