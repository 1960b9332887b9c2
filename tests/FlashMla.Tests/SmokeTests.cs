namespace FlashMla.Tests;

public class SmokeTests
{
    [Fact]
    public void Library_Loads() => Assert.NotNull(typeof(FlashMla.Numerics.BFloat16Placeholder));
}
