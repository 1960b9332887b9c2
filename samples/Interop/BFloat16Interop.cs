using System.Runtime.CompilerServices;
using OrtBFloat16 = Microsoft.ML.OnnxRuntime.BFloat16;
using OurBFloat16 = FlashMla.Numerics.BFloat16;
using TorchBFloat16 = TorchSharp.BFloat16;

/// <summary>
/// TorchSharp's and ONNX Runtime's bfloat16 structs are, like FlashMla.Numerics.BFloat16, two bytes
/// holding the top half of an IEEE float, so a tensor of one can be read as a tensor of another
/// without conversion (that is what wrapping their device pointers relies on). Checked here for all
/// 65536 bit patterns, and the float-to-bfloat16 roundings compared around every pattern.
/// </summary>
internal static class BFloat16Interop
{
    /// <summary>
    /// For every bit pattern: reinterpreting it as each type and back keeps the bits; widening to
    /// float gives the same float in all three (for NaNs: a NaN in all three); and the three round
    /// the same floats (the pattern's float, one ulp above, the halfway points and their
    /// neighbours) to the same bits.
    /// </summary>
    /// <returns>Whether everything agreed.</returns>
    public static bool CheckAllBitPatterns()
    {
        if (Unsafe.SizeOf<TorchBFloat16>() != 2 || Unsafe.SizeOf<OrtBFloat16>() != 2 || Unsafe.SizeOf<OurBFloat16>() != 2)
        {
            Console.WriteLine("bfloat16: error: the types are not all 2 bytes");
            return false;
        }

        var mismatches = new List<string>();
        var nanPatterns = 0;
        for (var pattern = 0; pattern <= ushort.MaxValue; pattern++)
        {
            var bits = (ushort)pattern;
            var ours = OurBFloat16.FromBits(bits);
            var torch = Unsafe.BitCast<OurBFloat16, TorchBFloat16>(ours);
            var ort = Unsafe.BitCast<OurBFloat16, OrtBFloat16>(ours);
            if (Unsafe.BitCast<TorchBFloat16, ushort>(torch) != bits || Unsafe.BitCast<OrtBFloat16, ushort>(ort) != bits
                || Unsafe.BitCast<TorchBFloat16, ushort>(TorchBFloat16.FromRawValue(bits)) != bits || new OrtBFloat16(bits).value != bits)
            {
                mismatches.Add($"0x{bits:X4}: reinterpreting changes the bits");
            }

            float value = (float)ours, torchValue = (float)torch, ortValue = (float)ort;
            if (float.IsNaN(value))
            {
                // ONNX Runtime sets the quiet bit when it widens a signalling NaN; a NaN stays a NaN.
                nanPatterns++;
                if (!float.IsNaN(torchValue) || !float.IsNaN(ortValue))
                {
                    mismatches.Add($"0x{bits:X4}: NaN widens to {torchValue} (TorchSharp), {ortValue} (ONNX Runtime)");
                }
            }
            else if (BitConverter.SingleToUInt32Bits(torchValue) != BitConverter.SingleToUInt32Bits(value)
                || BitConverter.SingleToUInt32Bits(ortValue) != BitConverter.SingleToUInt32Bits(value))
            {
                mismatches.Add($"0x{bits:X4}: widens to {value} (ours), {torchValue} (TorchSharp), {ortValue} (ONNX Runtime)");
            }

            foreach (var offset in (uint[])[0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF])
            {
                var x = BitConverter.UInt32BitsToSingle(((uint)bits << 16) + offset);
                var rounded = ((OurBFloat16)x).ToBits();
                var torchRounded = Unsafe.BitCast<TorchBFloat16, ushort>((TorchBFloat16)x);
                var ortRounded = Unsafe.BitCast<OrtBFloat16, ushort>((OrtBFloat16)x);
                var agree = float.IsNaN(x)
                    ? OurBFloat16.IsNaN(OurBFloat16.FromBits(torchRounded)) && OurBFloat16.IsNaN(OurBFloat16.FromBits(ortRounded))
                    : torchRounded == rounded && ortRounded == rounded;
                if (!agree)
                {
                    mismatches.Add($"float 0x{BitConverter.SingleToUInt32Bits(x):X8} rounds to 0x{rounded:X4} (ours), 0x{torchRounded:X4} (TorchSharp), 0x{ortRounded:X4} (ONNX Runtime)");
                }
            }
        }

        if (mismatches.Count > 0)
        {
            Console.WriteLine($"bfloat16: error: {mismatches.Count} mismatches; the first ones:");
            foreach (var m in mismatches.Take(10))
            {
                Console.WriteLine($"  {m}");
            }

            return false;
        }

        Console.WriteLine($"bfloat16: all 65536 bit patterns agree between TorchSharp.BFloat16, Microsoft.ML.OnnxRuntime.BFloat16 and FlashMla.Numerics.BFloat16 (bits, widening to float; {nanPatterns} NaN patterns stay NaN), and so do the roundings of {6 * 65536} floats");
        return true;
    }
}
