using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Testing;

/// <summary>The comparison must be able to fail: each check is shown to reject a bad input.</summary>
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
    public void AllClose_uses_flashmla_tolerances()
    {
        double[] reference = [1.0, 2.0, double.PositiveInfinity, 0.0];
        Assert.True(Compare.Check([1.001f, 2.0f, float.PositiveInfinity, 0.0005f], reference, Tolerance.Output).Passed);

        var wrong = Compare.Check([1.1f, 2.0f, float.PositiveInfinity, 0f], reference, Tolerance.Output);
        Assert.False(wrong.Passed);
        Assert.Equal(1, wrong.ElementFailures);
        Assert.Equal(0, wrong.FirstBadIndex);

        var special = Compare.Check([1f, 2f, float.NaN, 0f], reference, Tolerance.Output);
        Assert.Equal(1, special.SpecialMismatches);
        Assert.False(special.Passed);
    }

    [Fact]
    public void Check_ReportsTheLargestErrors()
    {
        var result = Compare.Check([1.0005, 2.0, double.NaN, 100.5], [1.0, 2.0, double.NaN, 100.0], new Tolerance(1e-3, 1e-2, 1));
        Assert.True(result.Passed);
        Assert.Equal(4, result.Count);
        Assert.Equal(0.5, result.MaxAbsError, 12);
        Assert.Equal(0.5 / (100 + 1e-6), result.MaxRelError, 12);
        Assert.Equal(-1, result.FirstBadIndex);
        Assert.True(result.CosineDiffPasses);
    }

    [Fact]
    public void OutputTolerance_IsFlashMlasExceptForFp16WithFloatProbabilities()
    {
        Assert.Same(Tolerance.Output, Tolerance.ForOutput(ElementType.BFloat16, roundsProbabilities: true));
        Assert.Same(Tolerance.Output, Tolerance.ForOutput(ElementType.BFloat16, roundsProbabilities: false));
        Assert.Same(Tolerance.Output, Tolerance.ForOutput(ElementType.Float16, roundsProbabilities: true));
        Assert.Same(Tolerance.OutputHalf, Tolerance.ForOutput(ElementType.Float16, roundsProbabilities: false));
        Assert.Equal(new Tolerance(8e-4, 2.01 / 128, 5e-6), Tolerance.Output);
        Assert.Equal(new Tolerance(1e-6, 8.01 / 65536, 1e-7), Tolerance.Lse);
    }
}
