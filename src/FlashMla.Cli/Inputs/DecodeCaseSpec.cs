using FlashMla.Tensors;

namespace FlashMla.Cli.Inputs;

/// <summary>One decode problem as described on the command line (or by a built-in grid).</summary>
internal sealed record DecodeCaseSpec
{
    public const int DefaultHeadDim = 576;
    public const int HeadDimV = 512;

    public int Batch { get; init; } = 4;
    /// <summary>s_k: the sequence length of every request, or the mean when <see cref="Varlen"/>.</summary>
    public int SeqLenK { get; init; } = 1024;
    public bool Varlen { get; init; }
    public int HeadsQ { get; init; } = 128;
    public int HeadsKv { get; init; } = 1;
    public int SeqQ { get; init; } = 1;
    public int PageSize { get; init; } = 64;
    /// <summary>The element type of q, k_cache and the output.</summary>
    public ElementType Dtype { get; init; } = ElementType.BFloat16;
    public bool Causal { get; init; }
    public int Seed { get; init; }
    public int HeadDim { get; init; } = DefaultHeadDim;
    /// <summary>Number of requests forced to length 0 (FlashMLA's corner cases).</summary>
    public int ZeroLengthRequests { get; init; }

    public double SoftmaxScale => 1.0 / Math.Sqrt(HeadDim);

    public string Describe() =>
        $"b={Batch} s_q={SeqQ} h_q={HeadsQ} h_kv={HeadsKv} s_k={SeqLenK}{(Varlen ? " varlen" : "")}" +
        $"{(Causal ? " causal" : "")} page={PageSize} {Dtype.ShortName()}" +
        $"{(ZeroLengthRequests > 0 ? $" zero-len={ZeroLengthRequests}" : "")}";
}
