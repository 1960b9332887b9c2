using System.Globalization;
using System.Runtime.InteropServices;

namespace FlashMla.Numerics;

/// <summary>
/// A 16-bit "brain" floating-point number: 1 sign bit, 8 exponent bits, 7 fraction bits.
/// The storage is bit-compatible with <c>torch.bfloat16</c> and CUDA's <c>__nv_bfloat16</c>, so
/// spans of this type can be copied to and from device memory as is.
/// </summary>
/// <remarks>
/// A bf16 value is the upper half of an IEEE 754 binary32 value, so widening to <see cref="float"/>
/// is exact. Narrowing from <see cref="float"/> or <see cref="double"/> rounds to nearest, ties to
/// even, in a single correctly-rounded step; values too large for bf16 become infinities, subnormal
/// results are produced exactly as IEEE 754 requires, and NaN stays a (quiet) NaN with its sign.
/// Equality and ordering follow <see cref="float"/>: the <c>==</c> operator is IEEE equality
/// (NaN is unequal to everything, +0 equals −0) while <see cref="Equals(BFloat16)"/> and
/// <see cref="CompareTo(BFloat16)"/> treat all NaNs as equal and order them first.
/// </remarks>
[StructLayout(LayoutKind.Sequential, Size = 2)]
public readonly struct BFloat16 : IEquatable<BFloat16>, IComparable<BFloat16>, IComparable, IFormattable
{
    private const ushort SignMask = 0x8000;
    private const ushort ExponentMask = 0x7F80;
    private const ushort FractionMask = 0x007F;
    private const ushort QuietBit = 0x0040;

    private readonly ushort _bits;

    private BFloat16(ushort bits) => _bits = bits;

    /// <summary>Positive zero.</summary>
    public static BFloat16 Zero => new(0x0000);

    /// <summary>Negative zero.</summary>
    public static BFloat16 NegativeZero => new(0x8000);

    /// <summary>The value 1.</summary>
    public static BFloat16 One => new(0x3F80);

    /// <summary>The canonical quiet NaN (bits 0x7FC0).</summary>
    public static BFloat16 NaN => new(0x7FC0);

    /// <summary>Positive infinity (bits 0x7F80).</summary>
    public static BFloat16 PositiveInfinity => new(0x7F80);

    /// <summary>Negative infinity (bits 0xFF80).</summary>
    public static BFloat16 NegativeInfinity => new(0xFF80);

    /// <summary>The largest finite value, about 3.3895e38 (bits 0x7F7F).</summary>
    public static BFloat16 MaxValue => new(0x7F7F);

    /// <summary>The most negative finite value, about −3.3895e38 (bits 0xFF7F).</summary>
    public static BFloat16 MinValue => new(0xFF7F);

    /// <summary>The smallest positive value, the subnormal 2^−133 (bits 0x0001).</summary>
    public static BFloat16 Epsilon => new(0x0001);

    /// <summary>The smallest positive normal value, 2^−126 (bits 0x0080).</summary>
    public static BFloat16 MinNormal => new(0x0080);

    /// <summary>Reinterprets a raw 16-bit pattern as a <see cref="BFloat16"/>.</summary>
    /// <param name="bits">The bit pattern.</param>
    /// <returns>The value with exactly these bits.</returns>
    public static BFloat16 FromBits(ushort bits) => new(bits);

    /// <summary>Returns the raw 16-bit pattern of this value.</summary>
    /// <returns>The bit pattern.</returns>
    public ushort ToBits() => _bits;

    /// <summary>Whether the value is a NaN.</summary>
    /// <param name="value">The value to test.</param>
    /// <returns><see langword="true"/> for any NaN pattern.</returns>
    public static bool IsNaN(BFloat16 value) => (value._bits & 0x7FFF) > ExponentMask;

    /// <summary>Whether the value is positive or negative infinity.</summary>
    /// <param name="value">The value to test.</param>
    /// <returns><see langword="true"/> for ±∞.</returns>
    public static bool IsInfinity(BFloat16 value) => (value._bits & 0x7FFF) == ExponentMask;

    /// <summary>Whether the value is positive infinity.</summary>
    /// <param name="value">The value to test.</param>
    /// <returns><see langword="true"/> for +∞.</returns>
    public static bool IsPositiveInfinity(BFloat16 value) => value._bits == 0x7F80;

    /// <summary>Whether the value is negative infinity.</summary>
    /// <param name="value">The value to test.</param>
    /// <returns><see langword="true"/> for −∞.</returns>
    public static bool IsNegativeInfinity(BFloat16 value) => value._bits == 0xFF80;

    /// <summary>Whether the value is finite (neither infinite nor NaN).</summary>
    /// <param name="value">The value to test.</param>
    /// <returns><see langword="true"/> for zeros, subnormals and normal values.</returns>
    public static bool IsFinite(BFloat16 value) => (value._bits & ExponentMask) != ExponentMask;

    /// <summary>Whether the sign bit is set (true for −0 and for NaNs with the sign bit).</summary>
    /// <param name="value">The value to test.</param>
    /// <returns><see langword="true"/> when the sign bit is 1.</returns>
    public static bool IsNegative(BFloat16 value) => (value._bits & SignMask) != 0;

    /// <summary>Whether the value is subnormal (zero exponent, non-zero fraction).</summary>
    /// <param name="value">The value to test.</param>
    /// <returns><see langword="true"/> for subnormal values.</returns>
    public static bool IsSubnormal(BFloat16 value) =>
        (value._bits & ExponentMask) == 0 && (value._bits & FractionMask) != 0;

    /// <summary>Whether the value is a normal number (not zero, subnormal, infinite or NaN).</summary>
    /// <param name="value">The value to test.</param>
    /// <returns><see langword="true"/> for normal values.</returns>
    public static bool IsNormal(BFloat16 value)
    {
        var exponent = value._bits & ExponentMask;
        return exponent != 0 && exponent != ExponentMask;
    }

    /// <summary>Whether the value is +0 or −0.</summary>
    /// <param name="value">The value to test.</param>
    /// <returns><see langword="true"/> for either zero.</returns>
    public static bool IsZero(BFloat16 value) => (value._bits & 0x7FFF) == 0;

    /// <summary>Rounds a <see cref="float"/> to the nearest bf16 value, ties to even.</summary>
    /// <param name="value">The value to narrow.</param>
    /// <returns>The rounded value; NaN inputs give a quiet NaN with the same sign.</returns>
    public static explicit operator BFloat16(float value) => new(RoundToBits(BitConverter.SingleToUInt32Bits(value)));

    /// <summary>
    /// Rounds a <see cref="double"/> to the nearest bf16 value, ties to even, with a single rounding
    /// (no double rounding through <see cref="float"/>).
    /// </summary>
    /// <param name="value">The value to narrow.</param>
    /// <returns>The correctly rounded value; NaN inputs give a quiet NaN with the same sign.</returns>
    public static explicit operator BFloat16(double value)
    {
        if (double.IsNaN(value))
        {
            return new((ushort)(double.IsNegative(value) ? 0xFFC0 : 0x7FC0));
        }

        // Narrow to binary32 with round-to-odd, then round that to bf16 with round-to-nearest-even.
        // Round-to-odd into a format with at least two more significand bits than the target gives
        // the correctly rounded result (binary32 has 16 more bits than bf16 at every exponent,
        // including the subnormal range, because both formats share the exponent range).
        var narrowed = (float)value;
        var bits = BitConverter.SingleToUInt32Bits(narrowed);
        if (Math.Abs((double)narrowed) > Math.Abs(value))
        {
            // The nearest float is further from zero (or is infinity): step one ulp toward zero to
            // get the truncated value.
            bits--;
        }

        if (BitConverter.UInt32BitsToSingle(bits) != value)
        {
            bits |= 1; // sticky bit: the value was inexact
        }

        return new(RoundToBits(bits));
    }

    /// <summary>Widens a bf16 value to <see cref="float"/>; the conversion is exact.</summary>
    /// <param name="value">The value to widen.</param>
    /// <returns>The same number as a <see cref="float"/>.</returns>
    public static explicit operator float(BFloat16 value) => BitConverter.UInt32BitsToSingle((uint)value._bits << 16);

    /// <summary>Widens a bf16 value to <see cref="double"/>; the conversion is exact.</summary>
    /// <param name="value">The value to widen.</param>
    /// <returns>The same number as a <see cref="double"/>.</returns>
    public static explicit operator double(BFloat16 value) => (float)value;

    /// <summary>IEEE equality: NaN is unequal to everything, +0 equals −0.</summary>
    /// <param name="left">The first value.</param>
    /// <param name="right">The second value.</param>
    /// <returns>Whether the values are numerically equal.</returns>
    public static bool operator ==(BFloat16 left, BFloat16 right) => (float)left == (float)right;

    /// <summary>IEEE inequality: true when either operand is NaN.</summary>
    /// <param name="left">The first value.</param>
    /// <param name="right">The second value.</param>
    /// <returns>Whether the values are not numerically equal.</returns>
    public static bool operator !=(BFloat16 left, BFloat16 right) => (float)left != (float)right;

    /// <summary>IEEE less-than (false when either operand is NaN).</summary>
    /// <param name="left">The first value.</param>
    /// <param name="right">The second value.</param>
    /// <returns>Whether <paramref name="left"/> is less than <paramref name="right"/>.</returns>
    public static bool operator <(BFloat16 left, BFloat16 right) => (float)left < (float)right;

    /// <summary>IEEE greater-than (false when either operand is NaN).</summary>
    /// <param name="left">The first value.</param>
    /// <param name="right">The second value.</param>
    /// <returns>Whether <paramref name="left"/> is greater than <paramref name="right"/>.</returns>
    public static bool operator >(BFloat16 left, BFloat16 right) => (float)left > (float)right;

    /// <summary>IEEE less-or-equal (false when either operand is NaN).</summary>
    /// <param name="left">The first value.</param>
    /// <param name="right">The second value.</param>
    /// <returns>Whether <paramref name="left"/> is at most <paramref name="right"/>.</returns>
    public static bool operator <=(BFloat16 left, BFloat16 right) => (float)left <= (float)right;

    /// <summary>IEEE greater-or-equal (false when either operand is NaN).</summary>
    /// <param name="left">The first value.</param>
    /// <param name="right">The second value.</param>
    /// <returns>Whether <paramref name="left"/> is at least <paramref name="right"/>.</returns>
    public static bool operator >=(BFloat16 left, BFloat16 right) => (float)left >= (float)right;

    /// <summary>
    /// Value equality as for <see cref="float.Equals(float)"/>: NaN equals NaN, +0 equals −0.
    /// </summary>
    /// <param name="other">The value to compare with.</param>
    /// <returns>Whether the values are equal.</returns>
    public bool Equals(BFloat16 other) => ((float)this).Equals((float)other);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => ((float)this).GetHashCode();

    /// <summary>Total order as for <see cref="float.CompareTo(float)"/>: NaN first, then −∞ … +∞.</summary>
    /// <param name="other">The value to compare with.</param>
    /// <returns>Negative, zero or positive.</returns>
    public int CompareTo(BFloat16 other) => ((float)this).CompareTo((float)other);

    /// <inheritdoc/>
    public int CompareTo(object? obj) => obj switch
    {
        null => 1,
        BFloat16 other => CompareTo(other),
        _ => throw new ArgumentException($"Object must be of type {nameof(BFloat16)}, not {obj.GetType().Name}.", nameof(obj)),
    };

    /// <summary>
    /// Formats the value with the invariant culture, using the shortest decimal string that
    /// converts back to the same bf16 value (for example "0.1" for the bf16 nearest 0.1).
    /// </summary>
    /// <returns>The formatted value.</returns>
    public override string ToString() => ToString(null, CultureInfo.InvariantCulture);

    /// <summary>
    /// Formats the value. A null or empty <paramref name="format"/> gives the shortest string that
    /// converts back to the same bf16 value; any other format is applied to the exact
    /// <see cref="float"/> value.
    /// </summary>
    /// <param name="format">A numeric format string, or null.</param>
    /// <param name="formatProvider">The culture information, or null for the current culture.</param>
    /// <returns>The formatted value.</returns>
    public string ToString(string? format, IFormatProvider? formatProvider)
    {
        var value = (float)this;
        if (!string.IsNullOrEmpty(format) || !float.IsFinite(value))
        {
            return value.ToString(format, formatProvider);
        }

        for (var digits = 1; digits < 9; digits++)
        {
            var text = value.ToString("G" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
            var parsed = float.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
            if (((BFloat16)parsed)._bits == _bits)
            {
                return value.ToString("G" + digits.ToString(CultureInfo.InvariantCulture), formatProvider);
            }
        }

        return value.ToString("R", formatProvider);
    }

    /// <summary>Round-to-nearest-even narrowing of a binary32 bit pattern to a bf16 bit pattern.</summary>
    internal static ushort RoundToBits(uint bits)
    {
        if ((bits & 0x7FFF_FFFF) > 0x7F80_0000)
        {
            // NaN: keep the sign and the upper payload bits, force the quiet bit so that a NaN whose
            // payload lives only in the dropped bits does not turn into an infinity.
            return (ushort)((bits >> 16) | QuietBit);
        }

        // Adding 0x7FFF plus the lowest kept bit rounds half-way cases to even. A carry out of the
        // fraction correctly bumps the exponent (into the normal range from subnormals, or up to
        // infinity from the largest finite values).
        var lsb = (bits >> 16) & 1;
        return (ushort)((bits + 0x7FFFu + lsb) >> 16);
    }
}
