using FlashMla.Testing;

namespace FlashMla.Tests.Testing;

public class PairwiseTests
{
    [Fact]
    public void DecoderGrid_CoversEveryValidPair_WithValidTests()
    {
        var levels = DecoderGrid.Levels;
        var tests = Pairwise.Generate(levels, DecoderGrid.IsValid);
        var seen = tests.SelectMany(Pairwise.PairsOf).ToHashSet();
        var probe = new int[levels.Count];
        var missing = 0;
        for (var f1 = 0; f1 < levels.Count; f1++)
        {
            for (var f2 = f1 + 1; f2 < levels.Count; f2++)
            {
                for (var v1 = 0; v1 < levels[f1]; v1++)
                {
                    for (var v2 = 0; v2 < levels[f2]; v2++)
                    {
                        Array.Fill(probe, -1);
                        probe[f1] = v1;
                        probe[f2] = v2;
                        if (DecoderGrid.IsValid(probe) && !seen.Contains((f1, v1, f2, v2)))
                        {
                            missing++;
                        }
                    }
                }
            }
        }

        Assert.Equal(0, missing);
        Assert.All(tests, t => Assert.True(DecoderGrid.IsValid(t), string.Join(",", t)));

        // h_q × s_k alone needs 30 tests; the greedy set should stay close to that.
        Assert.InRange(tests.Count, 30, 45);
    }

    [Fact]
    public void Generate_IsDeterministic()
    {
        var a = Pairwise.Generate(DecoderGrid.Levels, DecoderGrid.IsValid);
        var b = Pairwise.Generate(DecoderGrid.Levels, DecoderGrid.IsValid);
        Assert.Equal(a.Count, b.Count);
        for (var i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i], b[i]);
        }
    }

    [Fact]
    public void Generate_RespectsConstraints()
    {
        // Factor 0 value 1 may not go with factor 1 value 0.
        static bool Valid(int[] t) => !(t[0] == 1 && t[1] == 0);
        var tests = Pairwise.Generate([2, 2, 3], Valid);
        Assert.All(tests, t => Assert.True(Valid(t)));
        var pairs = tests.SelectMany(Pairwise.PairsOf).ToHashSet();
        Assert.Contains((0, 1, 1, 1), pairs);
        Assert.Contains((0, 0, 1, 0), pairs);
        Assert.DoesNotContain((0, 1, 1, 0), pairs);
        for (var v = 0; v < 3; v++)
        {
            Assert.Contains((0, 1, 2, v), pairs);
            Assert.Contains((1, 0, 2, v), pairs);
        }
    }
}
