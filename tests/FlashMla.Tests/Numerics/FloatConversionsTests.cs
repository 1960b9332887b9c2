using System.Runtime.InteropServices;
using FlashMla.Numerics;
using FlashMla.Testing;

namespace FlashMla.Tests.Numerics;

public class FloatConversionsTests
{
    // Lengths around the vector widths (8, 16 elements) and their multiples, plus a long one.
    public static TheoryData<int> Lengths => new(0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 576, 1000);

    [Fact]
    public void BFloat16ToSingle_MatchesScalar_ForAll65536Patterns()
    {
        var source = new BFloat16[65536 + 5];
        for (var i = 0; i < source.Length; i++)
        {
            source[i] = BFloat16.FromBits((ushort)i);
        }

        var destination = new float[source.Length];
        FloatConversions.ToSingle(source, destination);
        for (var i = 0; i < source.Length; i++)
        {
            Assert.Equal((uint)(ushort)i << 16, BitConverter.SingleToUInt32Bits(destination[i]));
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void SingleToBFloat16_MatchesScalar(int length)
    {
        var seed = TestSeeds.Next($"{nameof(SingleToBFloat16_MatchesScalar)}/{length}");
        var gaussian = new Gaussian(seed);
        var rng = gaussian.Uniform;
        uint[] specials = [0x7FC0_0000, 0xFFC0_0000, 0x7F80_0001, 0xFF80_0001, 0x7FA0_0000, 0x7FFF_FFFF, 0x7F80_0000, 0xFF80_0000, 0x7F7F_FFFF, 0x7F7F_8000, 0x3F80_8000, 0x3F81_8000, 0x0000_8000, 0x0000_8001, 0x007F_C000, 0x8000_0000, 0];
        var source = new float[length];
        for (var i = 0; i < length; i++)
        {
            var bits = rng.Next(4) switch
            {
                0 => specials[rng.Next(specials.Length)],
                1 => (uint)rng.NextInt64(0, 1L << 32),
                2 => ((uint)rng.Next(0, 65536) << 16) | 0x8000, // exact ties
                _ => BitConverter.SingleToUInt32Bits((float)gaussian.Next()),
            };
            source[i] = BitConverter.UInt32BitsToSingle(bits);
        }

        var destination = new BFloat16[length + 3];
        destination.AsSpan().Fill(BFloat16.FromBits(0x1234));
        FloatConversions.FromSingle(source, destination);
        for (var i = 0; i < length; i++)
        {
            Assert.True(((BFloat16)source[i]).ToBits() == destination[i].ToBits(), $"index {i}: 0x{BitConverter.SingleToUInt32Bits(source[i]):X8} → 0x{destination[i].ToBits():X4}, scalar 0x{((BFloat16)source[i]).ToBits():X4}; seed={seed}");
        }

        for (var i = length; i < destination.Length; i++)
        {
            Assert.Equal(0x1234, destination[i].ToBits());
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Half_ConversionsMatchScalar(int length)
    {
        var seed = TestSeeds.Next($"{nameof(Half_ConversionsMatchScalar)}/{length}");
        var gaussian = new Gaussian(seed);
        var rng = gaussian.Uniform;
        var source = new float[length];
        for (var i = 0; i < length; i++)
        {
            source[i] = (float)(gaussian.Next() * Math.Pow(10, rng.Next(-6, 6)));
        }

        var halves = new Half[length];
        FloatConversions.FromSingle(source, halves);
        var back = new float[length];
        FloatConversions.ToSingle(halves, back);
        for (var i = 0; i < length; i++)
        {
            Assert.Equal(BitConverter.HalfToUInt16Bits((Half)source[i]), BitConverter.HalfToUInt16Bits(halves[i]));
            Assert.Equal((float)halves[i], back[i]);
        }
    }

    [Fact]
    public void GenericOverloads_DispatchOnElementType()
    {
        float[] values = [1.5f, -0.1f, 3e-39f, 65504f];
        var bf = new BFloat16[4];
        var half = new Half[4];
        FloatConversions.FromSingle<BFloat16>(values, bf);
        FloatConversions.FromSingle<Half>(values, half);
        var bfBack = new float[4];
        var halfBack = new float[4];
        FloatConversions.ToSingle<BFloat16>(bf, bfBack);
        FloatConversions.ToSingle<Half>(half, halfBack);
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal((float)(BFloat16)values[i], bfBack[i]);
            Assert.Equal((float)(Half)values[i], halfBack[i]);
            Assert.Equal(bfBack[i], FloatConversions.ToSingle(bf[i]));
            Assert.Equal(bf[i].ToBits(), FloatConversions.FromSingle<BFloat16>(values[i]).ToBits());
            Assert.Equal(half[i], FloatConversions.FromSingle<Half>(values[i]));
        }

        Assert.Throws<NotSupportedException>(() => FloatConversions.ToSingle<int>(new int[1], new float[1]));
        Assert.Throws<NotSupportedException>(() => FloatConversions.FromSingle<double>(1f));
    }

    [Fact]
    public void ShortDestination_Throws()
    {
        Assert.Throws<ArgumentException>(() => FloatConversions.ToSingle(new BFloat16[4], new float[3]));
        Assert.Throws<ArgumentException>(() => FloatConversions.FromSingle(new float[4], new BFloat16[3]));
        Assert.Throws<ArgumentException>(() => FloatConversions.ToSingle(new Half[4], new float[3]));
        Assert.Throws<ArgumentException>(() => FloatConversions.FromSingle(new float[4], new Half[3]));
    }

    [Fact]
    public void UnalignedSlices_Convert()
    {
        var source = Enumerable.Range(0, 100).Select(i => (float)i / 7).ToArray();
        var destination = new BFloat16[100];
        FloatConversions.FromSingle(source.AsSpan(3, 50), destination.AsSpan(1, 50));
        var widened = new float[50];
        FloatConversions.ToSingle(destination.AsSpan(1, 50), widened);
        for (var i = 0; i < 50; i++)
        {
            Assert.Equal((float)(BFloat16)source[3 + i], widened[i]);
        }

        Assert.Equal(0, MemoryMarshal.Cast<BFloat16, ushort>(destination)[0]);
    }
}
