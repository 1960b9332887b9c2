using FlashMla.Numerics;
using FlashMla.Testing;

namespace FlashMla.Tests.Testing;

public class TestTensorsTests
{
    [Fact]
    public void Poison_IsDetected()
    {
        var tensor = TestTensors.AllocatePoisoned<BFloat16>(true, 2, 3);
        Assert.ThrowsAny<Exception>(() => TestTensors.AssertFullyWrittenWithinView(tensor, "t", "c"));
        TestTensors.ForEachOffset(tensor.Layout, (_, offset) => tensor.Span[(int)offset] = BFloat16.One);
        TestTensors.AssertFullyWrittenWithinView(tensor, "t", "c");
        tensor.Span[3] = BFloat16.Zero; // padding between rows written
        Assert.ThrowsAny<Exception>(() => TestTensors.AssertFullyWrittenWithinView(tensor, "t", "c"));
        Assert.ThrowsAny<Exception>(() => TestTensors.AssertUntouched(tensor, "t"));
    }

    [Fact]
    public void Bf16_rounding_is_to_nearest_even()
    {
        Assert.Equal(0x3F80, TestTensors.FromDouble<BFloat16>(1.0f).ToBits());
        Assert.Equal(0x3F80, TestTensors.FromDouble<BFloat16>(BitConverter.Int32BitsToSingle(0x3F808000)).ToBits()); // tie -> even
        Assert.Equal(0x3F82, TestTensors.FromDouble<BFloat16>(BitConverter.Int32BitsToSingle(0x3F818000)).ToBits()); // tie -> even (up)
        Assert.True(double.IsNaN(TestTensors.ToDouble(TestTensors.FromDouble<BFloat16>(float.NaN))));
    }
}
