using FlashMla.Tensors;

namespace FlashMla.Testing;

/// <summary>The grid of <c>flashmla verify</c>.</summary>
public static class VerifyGrid
{
    private static readonly (int QueryHeads, int KvHeads)[] FullHeads = [(1, 1), (16, 1), (128, 1), (9, 3), (64, 8), (126, 2)];
    private static readonly (int QueryHeads, int KvHeads)[] QuickHeads = [(16, 1), (128, 1), (9, 3)];
    private static readonly (int Batch, int SeqlenK)[] FullSizes = [(1, 20), (2, 140), (6, 1024)];
    private static readonly (int Batch, int SeqlenK)[] QuickSizes = [(1, 20), (3, 300)];
    private static readonly int[] FullSeqQ = [1, 2, 4];
    private static readonly int[] QuickSeqQ = [1, 2];
    private static readonly int[] PageSizes = [64, 16, 100];

    /// <summary>
    /// dtype × (b, s_k) × s_q × (h_q, h_kv); each combination gets one of {plain, causal, varlen,
    /// varlen + causal} and one page size in turn, so all of them are covered; then corner cases
    /// (zero-length requests, s_k &lt; s_q with causal, odd page sizes).
    /// </summary>
    /// <param name="quick">The smaller grid.</param>
    /// <param name="seed">The base seed: case i gets seed + i.</param>
    /// <returns>The cases.</returns>
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
                            SeqlenK = sk,
                            QueryLength = sq,
                            QueryHeads = hq,
                            KvHeads = hkv,
                            ElementType = dtype,
                            Causal = flags is 1 or 3,
                            Varlen = flags >= 2,
                            PageBlockSize = PageSizes[(index / 4) % PageSizes.Length],
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
            Batch = quick ? 8 : 32, SeqlenK = quick ? 200 : 1024, QueryLength = 2, QueryHeads = 16, KvHeads = 1, Varlen = true, Causal = true,
            ZeroLengthRequests = quick ? 3 : 8, Seed = seed + index++,
        });
        cases.Add(new DecodeCaseSpec
        {
            Batch = 3, SeqlenK = 2, QueryLength = 4, QueryHeads = 16, KvHeads = 1, Causal = true, Seed = seed + index++,
        });
        cases.Add(new DecodeCaseSpec
        {
            Batch = 2, SeqlenK = 130, QueryLength = 1, QueryHeads = 64, KvHeads = 1, PageBlockSize = 1, ElementType = ElementType.Float16, Seed = seed + index++,
        });
        cases.Add(new DecodeCaseSpec
        {
            Batch = 2, SeqlenK = quick ? 333 : 2000, QueryLength = 2, QueryHeads = 32, KvHeads = 4, PageBlockSize = 256, Varlen = true, Seed = seed + index++,
        });
        return cases;
    }
}
