namespace FlashMla.Tests;

public sealed class SkipReasonsTests
{
    [Fact]
    public void The_first_test_under_a_summary_gets_the_full_reason_and_the_others_one_line_naming_it()
    {
        var summary = $"summary {Guid.NewGuid():N}";
        const string Full = "line one\n  line two\n  line three";
        Assert.Equal(Full, SkipReasons.ReasonFor(summary, Full, "First.Test"));
        Assert.Equal($"{summary} (see First.Test for details)", SkipReasons.ReasonFor(summary, Full, "Second.Test"));
        Assert.Equal($"{summary} (see First.Test for details)", SkipReasons.ReasonFor(summary, "another reason", "Third.Test"));
        // The first test keeps its full reason (a retried or repeated test is not shortened).
        Assert.Equal(Full, SkipReasons.ReasonFor(summary, Full, "First.Test"));
    }
}
