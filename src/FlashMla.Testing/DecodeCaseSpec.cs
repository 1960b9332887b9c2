using System.Globalization;
using System.Text;
using FlashMla.Mla;
using FlashMla.Tensors;

namespace FlashMla.Testing;

/// <summary>
/// The parameters of one decode case: the shape, how the KV lengths are chosen, masking, element
/// type, layouts and the seed. <see cref="DecodeCase{T}"/> generates the inputs from it; the tests,
/// <c>flashmla verify</c>, <c>decode</c> and <c>bench</c> all describe their cases with it.
/// </summary>
/// <remarks>Records compare <see cref="Lengths"/> by reference.</remarks>
public sealed record DecodeCaseSpec
{
    /// <summary>The value head dimension: the first 512 columns of K are V.</summary>
    public const int HeadDimV = 512;

    /// <summary>b.</summary>
    public int Batch { get; init; } = 1;

    /// <summary>s_q.</summary>
    public int QueryLength { get; init; } = 1;

    /// <summary>h_q.</summary>
    public int QueryHeads { get; init; } = 16;

    /// <summary>h_kv.</summary>
    public int KvHeads { get; init; } = 1;

    /// <summary>d (576 or 512).</summary>
    public int HeadDim { get; init; } = 576;

    /// <summary>Tokens per page.</summary>
    public int PageBlockSize { get; init; } = 64;

    /// <summary>s_k: the length of every request, or the mean with <see cref="Varlen"/>.</summary>
    public int SeqlenK { get; init; } = 64;

    /// <summary>FlashMLA's variable lengths: <c>max(Normal(s_k, s_k / 2), s_q)</c> per request.</summary>
    public bool Varlen { get; init; }

    /// <summary>
    /// The b lengths, when given; <see cref="SeqlenK"/> and <see cref="Varlen"/> then only describe
    /// them (a cases file's lengths, say).
    /// </summary>
    public IReadOnlyList<int>? Lengths { get; init; }

    /// <summary>How many requests (chosen at random) get length 0, as in FlashMLA's corner cases.</summary>
    public int ZeroLengthRequests { get; init; }

    /// <summary>Causal masking among the query tokens of a request.</summary>
    public bool Causal { get; init; }

    /// <summary>An explicit softmax scale (null: d^−0.5).</summary>
    public float? SoftmaxScale { get; init; }

    /// <summary>
    /// The element type of q, k_cache and the output. <see cref="DecodeCase{T}.Create"/> sets it
    /// from its type argument.
    /// </summary>
    public ElementType ElementType { get; init; } = ElementType.BFloat16;

    /// <summary>Use padded (non-contiguous) layouts for q, k_cache, block table, output and lse.</summary>
    public bool NonContiguous { get; init; }

    /// <summary>
    /// The block table covers the longest length rounded up to a multiple of this many tokens
    /// (FlashMLA's <c>max_seqlen_pad</c>: 256); 1 gives a table just wide enough.
    /// </summary>
    public int SeqlenPadding { get; init; } = 256;

    /// <summary>Block-table columns beyond those of <see cref="SeqlenPadding"/>, all unused.</summary>
    public int ExtraTableColumns { get; init; }

    /// <summary>Pages in the pool beyond one per block-table entry (all NaN, never referenced).</summary>
    public int ExtraPoolBlocks { get; init; }

    /// <summary>The random seed.</summary>
    public int Seed { get; init; }

    /// <summary>The decode options of the case (causal, scale).</summary>
    public MlaDecodeOptions Options => new() { Causal = Causal, SoftmaxScale = SoftmaxScale };

    /// <summary>
    /// A one-line description without the seed, e.g.
    /// <c>b=2 s_q=1 h_q=16 h_kv=1 s_k=140 varlen causal page=16 bf16 zero-len=1</c>; what is not
    /// the default (d, given lengths, scale, layouts, table padding, extra columns and pages) is
    /// added at the end.
    /// </summary>
    /// <returns>The description.</returns>
    public string Describe()
    {
        var text = new StringBuilder();
        var invariant = CultureInfo.InvariantCulture;
        text.Append(invariant, $"b={Batch} s_q={QueryLength} h_q={QueryHeads} h_kv={KvHeads} ");
        if (Lengths is { } lengths)
        {
            text.Append(invariant, $"lengths=[{string.Join(",", lengths)}]");
        }
        else
        {
            text.Append(invariant, $"s_k={SeqlenK}{(Varlen ? " varlen" : string.Empty)}");
        }

        text.Append(invariant, $"{(Causal ? " causal" : string.Empty)} page={PageBlockSize} {ElementType.ShortName()}");
        text.Append(invariant, $"{(ZeroLengthRequests > 0 ? $" zero-len={ZeroLengthRequests}" : string.Empty)}");
        text.Append(invariant, $"{(HeadDim != 576 ? $" d={HeadDim}" : string.Empty)}{(SoftmaxScale is { } s ? $" scale={s}" : string.Empty)}");
        text.Append(invariant, $"{(NonContiguous ? " non-contiguous" : string.Empty)}{(SeqlenPadding != 256 ? $" padding={SeqlenPadding}" : string.Empty)}");
        text.Append(invariant, $"{(ExtraTableColumns != 0 ? $" extra-columns={ExtraTableColumns}" : string.Empty)}");
        text.Append(invariant, $"{(ExtraPoolBlocks != 0 ? $" extra-pages={ExtraPoolBlocks}" : string.Empty)}");
        return text.ToString();
    }

    /// <summary><see cref="Describe"/> and the seed, for failure messages.</summary>
    /// <returns>The description.</returns>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Describe()} seed={Seed}");
}
