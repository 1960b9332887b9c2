using System.Runtime.CompilerServices;
using FlashMla.Numerics;

namespace FlashMla.Tests.Numerics;

public class BFloat16Tests
{
    private static float F(uint bits) => BitConverter.UInt32BitsToSingle(bits);

    private static ushort Round(uint floatBits) => ((BFloat16)F(floatBits)).ToBits();

    [Fact]
    public void Storage_IsTwoBytes()
    {
        Assert.Equal(2, Unsafe.SizeOf<BFloat16>());
        Assert.Equal(2, System.Runtime.InteropServices.Marshal.SizeOf<BFloat16>());
    }

    [Fact]
    public void Widening_IsExact_AndRoundTrips_ForAll65536Patterns()
    {
        for (var bits = 0; bits <= ushort.MaxValue; bits++)
        {
            var value = BFloat16.FromBits((ushort)bits);
            var widened = (float)value;
            Assert.Equal((uint)bits << 16, BitConverter.SingleToUInt32Bits(widened));
            if (!BFloat16.IsNaN(value))
            {
                // (Signalling NaNs would be quieted by the float → double conversion.)
                Assert.Equal(BitConverter.SingleToUInt32Bits(widened), BitConverter.SingleToUInt32Bits((float)(double)value));
            }

            var back = ((BFloat16)widened).ToBits();
            var backFromDouble = ((BFloat16)(double)value).ToBits();
            if (BFloat16.IsNaN(value))
            {
                // NaN stays NaN with its sign and upper payload; the quiet bit is set.
                Assert.Equal(bits | 0x0040, back);
                Assert.True(BFloat16.IsNaN(BFloat16.FromBits(backFromDouble)));
                Assert.Equal(bits & 0x8000, backFromDouble & 0x8000);
            }
            else
            {
                Assert.Equal(bits, back);
                Assert.Equal(bits, backFromDouble);
            }
        }
    }

    [Theory]
    // 1 + 2^-8 lies half-way between 0x3F80 (even) and 0x3F81: ties go to even, down.
    [InlineData(0x3F80_8000u, 0x3F80)]
    // 1 + 3·2^-8 lies half-way between 0x3F81 (odd) and 0x3F82 (even): ties go to even, up.
    [InlineData(0x3F81_8000u, 0x3F82)]
    // Just above and just below a tie.
    [InlineData(0x3F80_8001u, 0x3F81)]
    [InlineData(0x3F80_7FFFu, 0x3F80)]
    [InlineData(0x3F81_7FFFu, 0x3F81)]
    // Negative ties, both directions.
    [InlineData(0xBF80_8000u, 0xBF80)]
    [InlineData(0xBF81_8000u, 0xBF82)]
    // A carry out of the fraction bumps the exponent: 2 − 2^-9 (tie, odd 0x3FFF) → 2.0.
    [InlineData(0x3FFF_8000u, 0x4000)]
    public void RoundsToNearestEven(uint floatBits, int expected)
    {
        Assert.Equal(expected, Round(floatBits));
    }

    [Theory]
    [InlineData(0x7F80_0000u, 0x7F80)] // +inf
    [InlineData(0xFF80_0000u, 0xFF80)] // -inf
    [InlineData(0x7F7F_FFFFu, 0x7F80)] // float.MaxValue overflows to +inf
    [InlineData(0xFF7F_FFFFu, 0xFF80)] // float.MinValue overflows to -inf
    [InlineData(0x7F7F_8000u, 0x7F80)] // tie above bf16 max (odd) rounds to inf
    [InlineData(0x7F7F_7FFFu, 0x7F7F)] // just below the tie stays at bf16 max
    [InlineData(0x0000_0000u, 0x0000)] // +0
    [InlineData(0x8000_0000u, 0x8000)] // -0 keeps its sign
    public void InfinitiesOverflowAndZeros(uint floatBits, int expected)
    {
        Assert.Equal(expected, Round(floatBits));
    }

    [Theory]
    [InlineData(0x7FC0_0000u, 0x7FC0)] // canonical quiet NaN
    [InlineData(0xFFC0_0000u, 0xFFC0)] // negative quiet NaN (float.NaN on x64)
    [InlineData(0x7F80_0001u, 0x7FC0)] // signalling NaN with payload only in dropped bits: must not become inf
    [InlineData(0xFF80_0001u, 0xFFC0)] // same, negative
    [InlineData(0x7FA0_0000u, 0x7FE0)] // signalling NaN with upper payload: payload kept, quiet bit set
    [InlineData(0x7FFF_FFFFu, 0x7FFF)] // all-ones payload: no carry into the sign
    [InlineData(0xFFFF_FFFFu, 0xFFFF)]
    public void NaN_StaysQuietNaN_WithSignAndPayload(uint floatBits, int expected)
    {
        var result = Round(floatBits);
        Assert.Equal(expected, result);
        Assert.True(BFloat16.IsNaN(BFloat16.FromBits(result)));
    }

    [Theory]
    [InlineData(0x0001_0000u, 0x0001)] // smallest bf16 subnormal 2^-133 is exact
    [InlineData(0x0000_8000u, 0x0000)] // 2^-134: tie between 0 and 0x0001 → even (0)
    [InlineData(0x0000_8001u, 0x0001)] // just above the tie rounds up to the smallest subnormal
    [InlineData(0x0000_0001u, 0x0000)] // smallest float subnormal rounds to 0
    [InlineData(0x8000_8001u, 0x8001)] // negative
    [InlineData(0x0001_8000u, 0x0002)] // tie between 0x0001 (odd) and 0x0002 → up
    [InlineData(0x007F_0000u, 0x007F)] // largest subnormal is exact
    [InlineData(0x007F_C000u, 0x0080)] // tie above the largest subnormal rounds into the normal range
    [InlineData(0x007F_FFFFu, 0x0080)] // largest float subnormal rounds up to MinNormal
    [InlineData(0x0080_0000u, 0x0080)] // smallest normal is exact
    [InlineData(0x0080_7FFFu, 0x0080)] // a normal just above MinNormal stays normal
    public void Subnormals(uint floatBits, int expected)
    {
        Assert.Equal(expected, Round(floatBits));
    }

    [Fact]
    public void Subnormal_Classification()
    {
        Assert.True(BFloat16.IsSubnormal(BFloat16.Epsilon));
        Assert.True(BFloat16.IsSubnormal(BFloat16.FromBits(0x807F)));
        Assert.False(BFloat16.IsSubnormal(BFloat16.MinNormal));
        Assert.True(BFloat16.IsNormal(BFloat16.MinNormal));
        Assert.False(BFloat16.IsNormal(BFloat16.Zero));
        Assert.Equal(MathF.Pow(2, -133), (float)BFloat16.Epsilon);
        Assert.Equal(MathF.Pow(2, -126), (float)BFloat16.MinNormal);
        Assert.Equal(3.3895314e38f, (float)BFloat16.MaxValue);
        Assert.Equal(-(float)BFloat16.MaxValue, (float)BFloat16.MinValue);
    }

    [Fact]
    public void Double_IsRoundedOnce_NotThroughFloat()
    {
        // 1 + 2^-8 + 2^-30 is just above the bf16 tie between 1 and 1 + 2^-7. Rounding to float
        // first loses the 2^-30 and lands exactly on the tie, which would then round down to 1.
        var value = 1.0 + Math.Pow(2, -8) + Math.Pow(2, -30);
        Assert.Equal(0x3F80, ((BFloat16)(float)value).ToBits()); // what double rounding would give
        Assert.Equal(0x3F81, ((BFloat16)value).ToBits());

        // Same below the tie: 1 + 3·2^-8 − 2^-30 must round down to 0x3F81, not up to even 0x3F82.
        var below = 1.0 + (3 * Math.Pow(2, -8)) - Math.Pow(2, -30);
        Assert.Equal(0x3F82, ((BFloat16)(float)below).ToBits());
        Assert.Equal(0x3F81, ((BFloat16)below).ToBits());

        // Values beyond float's range still round correctly.
        Assert.Equal(0x7F80, ((BFloat16)1e300).ToBits());
        Assert.Equal(0xFF80, ((BFloat16)(-1e300)).ToBits());
        Assert.Equal(0x0000, ((BFloat16)1e-300).ToBits());
        Assert.Equal(0x8000, ((BFloat16)(-1e-300)).ToBits());
        Assert.Equal(0x7F80, ((BFloat16)double.PositiveInfinity).ToBits());
        Assert.True(BFloat16.IsNaN((BFloat16)double.NaN));
        Assert.True(BFloat16.IsNegative((BFloat16)(-double.NaN)) == double.IsNegative(-double.NaN));
    }

    [Fact]
    public void Double_MatchesAnExactOracle_OnRandomAndNearTieValues()
    {
        var seed = TestSeeds.Next();
        var rng = new Random(seed);
        for (var i = 0; i < 200_000; i++)
        {
            double value;
            switch (i % 3)
            {
                case 0:
                    // Random bits over the whole double range.
                    value = BitConverter.Int64BitsToDouble(rng.NextInt64());
                    break;
                case 1:
                    // Random values in bf16's range, including subnormals.
                    value = Math.ScaleB(rng.NextDouble() * 2 - 1, rng.Next(-140, 130));
                    break;
                default:
                    // Near a tie: the midpoint of two neighbours, nudged by a tiny relative amount.
                    var bits = (ushort)rng.Next(0, 0x7F7F);
                    var mid = ((double)BFloat16.FromBits(bits) + (double)BFloat16.FromBits((ushort)(bits + 1))) / 2;
                    value = rng.Next(3) switch
                    {
                        0 => mid,
                        1 => mid * (1 + Math.Pow(2, -40)),
                        _ => mid * (1 - Math.Pow(2, -40)),
                    };
                    if (rng.Next(2) == 0)
                    {
                        value = -value;
                    }

                    break;
            }

            if (double.IsNaN(value))
            {
                continue;
            }

            var result = (BFloat16)value;
            Assert.True(IsCorrectlyRounded(value, result), $"(BFloat16){value:R} gave 0x{result.ToBits():X4}; seed={seed}");
        }
    }

    /// <summary>
    /// Round-to-nearest-even oracle: |value| must lie between the midpoints to the neighbours of the
    /// result (exactly representable in double), and on a midpoint only when the result is even.
    /// </summary>
    private static bool IsCorrectlyRounded(double value, BFloat16 result)
    {
        if (BFloat16.IsNegative(result) != double.IsNegative(value))
        {
            return false;
        }

        var magnitude = Math.Abs(value);
        var bits = (ushort)(result.ToBits() & 0x7FFF);
        var half = Math.Pow(2, 127 - 8); // half an ulp at the top binade
        if (bits == 0x7F80)
        {
            return magnitude >= (double)BFloat16.MaxValue + half;
        }

        if (bits > 0x7F80)
        {
            return false;
        }

        var current = (double)BFloat16.FromBits(bits);
        var upper = bits == 0x7F7F ? current + half : (current + (double)BFloat16.FromBits((ushort)(bits + 1))) / 2;
        var lower = bits == 0 ? 0.0 : (current + (double)BFloat16.FromBits((ushort)(bits - 1))) / 2;
        var even = (bits & 1) == 0;
        var aboveLower = bits == 0 || magnitude > lower || (magnitude == lower && even);
        var belowUpper = magnitude < upper || (magnitude == upper && even);
        return aboveLower && belowUpper;
    }

    [Fact]
    public void Float_MatchesTheOracle_OnRandomPatterns()
    {
        var seed = TestSeeds.Next();
        var rng = new Random(seed);
        for (var i = 0; i < 200_000; i++)
        {
            var value = F((uint)rng.NextInt64(0, 1L << 32));
            if (float.IsNaN(value))
            {
                continue;
            }

            var result = (BFloat16)value;
            Assert.True(IsCorrectlyRounded(value, result), $"(BFloat16){value:R} gave 0x{result.ToBits():X4}; seed={seed}");
        }
    }

    [Fact]
    public void Equality_And_Ordering_FollowFloat()
    {
        var nan = BFloat16.NaN;
        var otherNaN = BFloat16.FromBits(0xFFC1);
        var sameNaN = BFloat16.NaN;
        Assert.False(nan == sameNaN);
        Assert.True(nan != sameNaN);
        Assert.True(nan.Equals(otherNaN));
        Assert.Equal(nan.GetHashCode(), otherNaN.GetHashCode());
        Assert.True(BFloat16.Zero == BFloat16.NegativeZero);
        Assert.True(BFloat16.Zero.Equals(BFloat16.NegativeZero));
        Assert.Equal(BFloat16.Zero.GetHashCode(), BFloat16.NegativeZero.GetHashCode());
        Assert.True(BFloat16.One > BFloat16.Zero);
        Assert.True(BFloat16.NegativeInfinity < BFloat16.MinValue);
        Assert.True(BFloat16.One <= BFloat16.One && BFloat16.One >= BFloat16.One);
        Assert.False(nan < BFloat16.One || nan > BFloat16.One);

        BFloat16[] values = [BFloat16.One, nan, BFloat16.NegativeInfinity, BFloat16.Zero, BFloat16.PositiveInfinity, (BFloat16)(-2f)];
        Array.Sort(values);
        Assert.True(BFloat16.IsNaN(values[0]));
        Assert.Equal([float.NegativeInfinity, -2f, 0f, 1f, float.PositiveInfinity], values.Skip(1).Select(v => (float)v).ToArray());
        Assert.Equal(1, BFloat16.One.CompareTo(null));
        Assert.Throws<ArgumentException>(() => BFloat16.One.CompareTo("1"));
        Assert.False(BFloat16.One.Equals((object)1f));
    }

    [Fact]
    public void Classification()
    {
        Assert.True(BFloat16.IsNaN(BFloat16.NaN));
        Assert.False(BFloat16.IsNaN(BFloat16.PositiveInfinity));
        Assert.True(BFloat16.IsInfinity(BFloat16.NegativeInfinity));
        Assert.True(BFloat16.IsPositiveInfinity(BFloat16.PositiveInfinity));
        Assert.True(BFloat16.IsNegativeInfinity(BFloat16.NegativeInfinity));
        Assert.False(BFloat16.IsFinite(BFloat16.NaN));
        Assert.True(BFloat16.IsFinite(BFloat16.MaxValue));
        Assert.True(BFloat16.IsNegative(BFloat16.NegativeZero));
        Assert.True(BFloat16.IsZero(BFloat16.NegativeZero));
        Assert.Equal(1f, (float)BFloat16.One);
    }

    [Theory]
    [InlineData(0.1f, "0.1")]
    [InlineData(1f, "1")]
    [InlineData(-2.5f, "-2.5")]
    [InlineData(3.14159f, "3.14")]
    [InlineData(1e10f, "1E+10")]
    [InlineData(float.PositiveInfinity, "Infinity")]
    [InlineData(float.NaN, "NaN")]
    public void ToString_IsShortestRoundTrip(float value, string expected)
    {
        var bf = (BFloat16)value;
        Assert.Equal(expected, bf.ToString());
        if (!BFloat16.IsNaN(bf))
        {
            Assert.Equal(bf.ToBits(), ((BFloat16)float.Parse(bf.ToString(), System.Globalization.CultureInfo.InvariantCulture)).ToBits());
        }
    }

    [Fact]
    public void ToString_ShortestRoundTrip_ForAllFinitePatterns()
    {
        for (var bits = 0; bits <= ushort.MaxValue; bits += 7)
        {
            var value = BFloat16.FromBits((ushort)bits);
            if (!BFloat16.IsFinite(value))
            {
                continue;
            }

            var text = value.ToString();
            var parsed = (BFloat16)float.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(parsed.Equals(value), $"0x{bits:X4} → \"{text}\" → 0x{parsed.ToBits():X4}");
        }

        Assert.Equal("1.00", BFloat16.One.ToString("F2", System.Globalization.CultureInfo.InvariantCulture));
    }
}
