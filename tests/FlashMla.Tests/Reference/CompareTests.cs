using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Tests.Reference;

/// <summary>The test helpers must be able to fail: each check is shown to reject a bad input.</summary>
public class CompareTests
{
    [Fact]
    public void ElementPasses_OnAbsOrRel()
    {
        var tolerance = new Tolerance(1e-3, 1e-2, 1);
        Assert.True(Compare.Check([1.0005], [1.0], tolerance).Passed);      // abs ok
        Assert.True(Compare.Check([100.5], [100.0], tolerance).Passed);     // rel ok
        var result = Compare.Check([0.0, 2.0, 100.0], [0.0, 2.05, 100.0], tolerance, [3]);
        Assert.False(result.Passed);
        Assert.Equal(1, result.BadElements);
        Assert.Contains("index 1 [1]", result.Message, StringComparison.Ordinal);
        Assert.Contains("actual 2", result.Message, StringComparison.Ordinal);
        Assert.Contains("expected 2.05", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InfAndNaNPositions_MustMatchExactly()
    {
        var tolerance = new Tolerance(1, 1, 1);
        Assert.True(Compare.Check([double.PositiveInfinity, double.NaN, 1], [double.PositiveInfinity, double.NaN, 1], tolerance).Passed);
        Assert.False(Compare.Check([double.PositiveInfinity], [double.NegativeInfinity], tolerance).Passed);
        Assert.False(Compare.Check([1e300], [double.PositiveInfinity], tolerance).Passed);
        Assert.False(Compare.Check([double.NaN], [0], tolerance).Passed);
        Assert.False(Compare.Check([0], [double.NaN], tolerance).Passed);
    }

    [Fact]
    public void CosineDiff_CatchesSmallSystematicErrors()
    {
        // Every element within abs tolerance, but the vectors point in different directions.
        var reference = Enumerable.Range(0, 1000).Select(i => Math.Sin(i) * 1e-3).ToArray();
        var actual = reference.Select((v, i) => v + (((i % 2) == 0 ? 1 : -1) * 5e-4)).ToArray();
        var result = Compare.Check(actual, reference, Tolerance.Output);
        Assert.Equal(0, result.BadElements);
        Assert.False(result.Passed);
        Assert.Contains("cosine diff", result.Message, StringComparison.Ordinal);
        Assert.True(Compare.Check(reference, reference, Tolerance.Output).Passed);
        Assert.Equal(0, Compare.Check([0.0, 0.0], [0.0, 0.0], Tolerance.Output).CosineDiff);
    }

    [Fact]
    public void LengthMismatch_Fails()
    {
        Assert.False(Compare.Check([1.0], [1.0, 2.0], Tolerance.Lse).Passed);
    }

    [Fact]
    public void AssertClose_ReportsTheCase()
    {
        var exception = Assert.ThrowsAny<Exception>(() => Compare.AssertClose([1.0], [2.0], Tolerance.Lse, "lse", "seed=42"));
        Assert.Contains("lse:", exception.Message, StringComparison.Ordinal);
        Assert.Contains("seed=42", exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Reference_DetectsAWrongDecode()
    {
        // A decode with one wrong element (a perturbed output row) must fail the comparison; so
        // must a decode that ignores the causal mask.
        var decodeCase = DecodeCase<BFloat16>.Create(new DecodeCaseSpec { Batch = 2, QueryLength = 2, QueryHeads = 8, KvHeads = 1, SeqlenK = 100, Causal = true, PageBlockSize = 16, Seed = TestSeeds.Next() });
        var reference = NaiveMlaReference.Compute(decodeCase);
        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();
        new CpuMlaDecoder().Decode(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, output, lse, decodeCase.Options);
        var actual = TensorTestUtil.ToDoubleArray(output);
        Assert.True(Compare.Check(actual, reference.Output, Tolerance.Output).Passed);

        actual[513] += 0.01;
        Assert.False(Compare.Check(actual, reference.Output, Tolerance.Output).Passed);

        var nonCausal = decodeCase.Options with { Causal = false };
        var unmasked = NaiveMlaReference.Compute(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, nonCausal);
        Assert.False(Compare.Check(unmasked.Output, reference.Output, Tolerance.Output).Passed);
        Assert.False(Compare.Check(unmasked.Lse, reference.Lse, Tolerance.Lse).Passed);
    }

    [Fact]
    public void Reference_MatchesAHandComputedExample()
    {
        // One request, two keys, one head, d = 512: q·k0 = 0, q·k1 = 1 (scale 1).
        var q = HostTensor<BFloat16>.Create(1, 1, 1, 512);
        var k = HostTensor<BFloat16>.Create(1, 2, 1, 512);
        q.Span[0] = BFloat16.One;
        k.Span[512] = BFloat16.One;        // key 1, column 0
        k.Span[1] = (BFloat16)2f;          // key 0, column 1
        var table = new HostTensor<int>(new[] { 0 }, TensorLayout.Contiguous(1, 1));
        var seqlens = new HostTensor<int>(new[] { 2 }, TensorLayout.Contiguous(1));
        var result = NaiveMlaReference.Compute(q, k, table, seqlens, new MlaDecodeOptions { SoftmaxScale = 1f });
        var p1 = Math.E / (1 + Math.E);
        Assert.Equal(Math.Log(1 + Math.E), result.Lse[0], 12);
        Assert.Equal(p1, result.Output[0], 12);
        Assert.Equal(2 * (1 - p1), result.Output[1], 12);
    }

    [Fact]
    public void Poison_IsDetected()
    {
        var tensor = TensorTestUtil.AllocatePoisoned<BFloat16>(true, 2, 3);
        Assert.ThrowsAny<Exception>(() => TensorTestUtil.AssertFullyWrittenWithinView(tensor, "t", "c"));
        TensorTestUtil.ForEachOffset(tensor.Layout, (_, offset) => tensor.Span[(int)offset] = BFloat16.One);
        TensorTestUtil.AssertFullyWrittenWithinView(tensor, "t", "c");
        tensor.Span[3] = BFloat16.Zero; // padding between rows written
        Assert.ThrowsAny<Exception>(() => TensorTestUtil.AssertFullyWrittenWithinView(tensor, "t", "c"));
        Assert.ThrowsAny<Exception>(() => TensorTestUtil.AssertUntouched(tensor, "t"));
    }

    [Fact]
    public void Generator_BuildsWhatItPromises()
    {
        var decodeCase = DecodeCase<Half>.Create(new DecodeCaseSpec { Batch = 6, QueryLength = 2, SeqlenK = 300, Mode = SeqlenMode.Varlen, ZeroLengthMix = true, PageBlockSize = 16, Seed = TestSeeds.Next() });
        Assert.Contains(0, decodeCase.Seqlens);
        var used = new HashSet<int>();
        var inOrder = new List<int>();
        for (var i = 0; i < 6; i++)
        {
            var seqlen = decodeCase.Seqlens[i];
            var pages = (seqlen + 15) / 16;
            for (var j = 0; j < decodeCase.MaxBlocksPerSequence; j++)
            {
                var id = decodeCase.BlockTable.Get(i, j);
                if (j < pages)
                {
                    Assert.InRange(id, 0, decodeCase.NumBlocks - 1);
                    Assert.True(used.Add(id), "pages are not shared");
                    inOrder.Add(id);
                }
                else
                {
                    Assert.True(id < 0 || id >= decodeCase.NumBlocks);
                }
            }

            if (seqlen % 16 != 0)
            {
                var last = decodeCase.BlockTable.Get(i, pages - 1);
                Assert.True(Half.IsNaN(decodeCase.KCache.Get(last, seqlen % 16, 0, 0)), "tail slots are NaN");
                Assert.False(Half.IsNaN(decodeCase.KCache.Get(last, (seqlen % 16) - 1, 0, 575)));
            }
        }

        for (var block = 0; block < decodeCase.NumBlocks; block++)
        {
            if (!used.Contains(block))
            {
                Assert.True(Half.IsNaN(decodeCase.KCache.Get(block, 0, 0, 0)), "unused pages are NaN");
            }
        }

        var q = TensorTestUtil.ToDoubleArray(decodeCase.Q);
        Assert.All(q, v => Assert.InRange(v, -1.0, 1.0));
        var sd = Math.Sqrt(q.Select(v => v * v).Average());
        Assert.InRange(sd, 0.09, 0.11);

        // Block ids are shuffled, not handed out in order.
        Assert.NotEqual(inOrder.Order().ToArray(), inOrder.ToArray());
    }
}
