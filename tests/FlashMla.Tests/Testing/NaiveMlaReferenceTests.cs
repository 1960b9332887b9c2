using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Testing;

/// <summary>The float64 reference: right on a hand-computed example, and able to tell a wrong decode.</summary>
public class NaiveMlaReferenceTests
{
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
        var actual = TestTensors.ToDoubleArray(output);
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
}
