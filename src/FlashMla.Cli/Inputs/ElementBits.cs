using FlashMla.Tensors;

namespace FlashMla.Cli.Inputs;

/// <summary>Conversions between float and the 16-bit patterns of bf16 / fp16.</summary>
internal static class ElementBits
{
    public static ushort FloatToBf16(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x0040); // keep it a (quiet) NaN
        }
        // Round to nearest, ties to even.
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)(bits >> 16);
    }

    public static float Bf16ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    public static ushort FloatToFp16(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    public static float Fp16ToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    public static ushort FromFloat(ElementType kind, float value) =>
        kind == ElementType.BFloat16 ? FloatToBf16(value) : FloatToFp16(value);

    public static float ToFloat(ElementType kind, ushort bits) =>
        kind == ElementType.BFloat16 ? Bf16ToFloat(bits) : Fp16ToFloat(bits);

    public static ushort NaN(ElementType kind) => kind == ElementType.BFloat16 ? (ushort)0x7FC0 : (ushort)0x7E00;

    /// <summary>Widens a span of 16-bit patterns to float.</summary>
    public static void Widen(ElementType kind, ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (kind == ElementType.BFloat16)
        {
            for (var i = 0; i < source.Length; i++)
            {
                destination[i] = Bf16ToFloat(source[i]);
            }
        }
        else
        {
            for (var i = 0; i < source.Length; i++)
            {
                destination[i] = Fp16ToFloat(source[i]);
            }
        }
    }
}
