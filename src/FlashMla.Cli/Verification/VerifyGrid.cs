using FlashMla.Cli.Inputs;
using FlashMla.Tensors;

namespace FlashMla.Cli.Verification;

/// <summary>The built-in grid of <c>flashmla verify</c>.</summary>
internal static class VerifyGrid
{
    private static readonly (int HeadsQ, int HeadsKv)[] FullHeads = [(1, 1), (16, 1), (128, 1), (9, 3), (64, 8), (126, 2)];
    private static readonly (int HeadsQ, int HeadsKv)[] QuickHeads = [(16, 1), (128, 1), (9, 3)];
    private static readonly (int Batch, int SeqLenK)[] FullSizes = [(1, 20), (2, 140), (6, 1024)];
    private static readonly (int Batch, int SeqLenK)[] QuickSizes = [(1, 20), (3, 300)];
    private static readonly int[] FullSeqQ = [1, 2, 4];
    private static readonly int[] QuickSeqQ = [1, 2];
    private static readonly int[] PageSizes = [64, 16, 100];

    /// <summary>
    /// dtype × (b, s_k) × s_q × (h_q, h_kv); each combination gets one of {plain, causal, varlen,
    /// varlen + causal} and one page size in turn, so all of them are covered; then corner cases
    /// (zero-length requests, s_k &lt; s_q with causal, odd page sizes).
    /// </summary>
    public static IReadOnlyList<DecodeCaseSpec> Cases(bool quick, int seed)
    {
        var sizes = quick ? QuickSizes : FullSizes;
        var seqQs = quick ? QuickSeqQ : FullSeqQ;
        var heads = quick ? QuickHeads : FullHeads;
        var cases = new List<DecodeCaseSpec>();
        var index = 0;
        foreach (var dtype in (ElementType[])[ElementType.BFloat16, ElementType.Float16])
        {
            foreach (var (b, sk) in sizes)
            {
                foreach (var sq in seqQs)
                {
                    foreach (var (hq, hkv) in heads)
                    {
                        var flags = index % 4;
                        cases.Add(new DecodeCaseSpec
                        {
                            Batch = b,
                            SeqLenK = sk,
                            SeqQ = sq,
                            HeadsQ = hq,
                            HeadsKv = hkv,
                            Dtype = dtype,
                            Causal = flags is 1 or 3,
                            Varlen = flags >= 2,
                            PageSize = PageSizes[(index / 4) % PageSizes.Length],
                            Seed = seed + index,
                        });
                        index++;
                    }
                }
            }
        }

        // Corner cases.
        cases.Add(new DecodeCaseSpec
        {
            Batch = quick ? 8 : 32, SeqLenK = quick ? 200 : 1024, SeqQ = 2, HeadsQ = 16, HeadsKv = 1, Varlen = true, Causal = true,
            ZeroLengthRequests = quick ? 3 : 8, Seed = seed + index++,
        });
        cases.Add(new DecodeCaseSpec
        {
            Batch = 3, SeqLenK = 2, SeqQ = 4, HeadsQ = 16, HeadsKv = 1, Causal = true, Seed = seed + index++,
        });
        cases.Add(new DecodeCaseSpec
        {
            Batch = 2, SeqLenK = 130, SeqQ = 1, HeadsQ = 64, HeadsKv = 1, PageSize = 1, Dtype = ElementType.Float16, Seed = seed + index++,
        });
        cases.Add(new DecodeCaseSpec
        {
            Batch = 2, SeqLenK = quick ? 333 : 2000, SeqQ = 2, HeadsQ = 32, HeadsKv = 4, PageSize = 256, Varlen = true, Seed = seed + index++,
        });
        return cases;
    }
}
