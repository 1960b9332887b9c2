using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FlashMla.Numerics;

/// <summary>
/// Vectorized span conversions between the 16-bit element types and <see cref="float"/>.
/// </summary>
/// <remarks>
/// Reductions must never run on 16-bit spans directly (TensorPrimitives accumulates
/// <see cref="Half"/> in <see cref="Half"/>): widen to <see cref="float"/> first with these helpers.
/// </remarks>
internal static class FloatConversions
{
    /// <summary>Widens bf16 values to float (exact).</summary>
    public static void ToSingle(ReadOnlySpan<BFloat16> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        var src = MemoryMarshal.Cast<BFloat16, ushort>(source);
        var dst = MemoryMarshal.Cast<float, uint>(destination);
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= src.Length - Vector256<ushort>.Count; i += Vector256<ushort>.Count)
            {
                var v = Vector256.LoadUnsafe(ref MemoryMarshal.GetReference(src), (nuint)i);
                var (lo, hi) = Vector256.Widen(v);
                Vector256.ShiftLeft(lo, 16).StoreUnsafe(ref MemoryMarshal.GetReference(dst), (nuint)i);
                Vector256.ShiftLeft(hi, 16).StoreUnsafe(ref MemoryMarshal.GetReference(dst), (nuint)(i + Vector256<uint>.Count));
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= src.Length - Vector128<ushort>.Count; i += Vector128<ushort>.Count)
            {
                var v = Vector128.LoadUnsafe(ref MemoryMarshal.GetReference(src), (nuint)i);
                var (lo, hi) = Vector128.Widen(v);
                Vector128.ShiftLeft(lo, 16).StoreUnsafe(ref MemoryMarshal.GetReference(dst), (nuint)i);
                Vector128.ShiftLeft(hi, 16).StoreUnsafe(ref MemoryMarshal.GetReference(dst), (nuint)(i + Vector128<uint>.Count));
            }
        }

        for (; i < src.Length; i++)
        {
            dst[i] = (uint)src[i] << 16;
        }
    }

    /// <summary>Narrows float values to bf16 with round-to-nearest-even (NaN stays a quiet NaN).</summary>
    public static void FromSingle(ReadOnlySpan<float> source, Span<BFloat16> destination)
    {
        CheckLengths(source.Length, destination.Length);
        var src = MemoryMarshal.Cast<float, uint>(source);
        var dst = MemoryMarshal.Cast<BFloat16, ushort>(destination);
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= src.Length - Vector256<ushort>.Count; i += Vector256<ushort>.Count)
            {
                var lo = Round256(Vector256.LoadUnsafe(ref MemoryMarshal.GetReference(src), (nuint)i));
                var hi = Round256(Vector256.LoadUnsafe(ref MemoryMarshal.GetReference(src), (nuint)(i + Vector256<uint>.Count)));
                Vector256.Narrow(lo, hi).StoreUnsafe(ref MemoryMarshal.GetReference(dst), (nuint)i);
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= src.Length - Vector128<ushort>.Count; i += Vector128<ushort>.Count)
            {
                var lo = Round128(Vector128.LoadUnsafe(ref MemoryMarshal.GetReference(src), (nuint)i));
                var hi = Round128(Vector128.LoadUnsafe(ref MemoryMarshal.GetReference(src), (nuint)(i + Vector128<uint>.Count)));
                Vector128.Narrow(lo, hi).StoreUnsafe(ref MemoryMarshal.GetReference(dst), (nuint)i);
            }
        }

        for (; i < src.Length; i++)
        {
            dst[i] = BFloat16.RoundToBits(src[i]);
        }
    }

    /// <summary>Widens fp16 values to float (exact).</summary>
    public static void ToSingle(ReadOnlySpan<Half> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        TensorPrimitives.ConvertToSingle(source, destination);
    }

    /// <summary>Narrows float values to fp16 with round-to-nearest-even.</summary>
    public static void FromSingle(ReadOnlySpan<float> source, Span<Half> destination)
    {
        CheckLengths(source.Length, destination.Length);
        TensorPrimitives.ConvertToHalf(source, destination);
    }

    /// <summary>Widens values of a supported 16-bit element type (<see cref="BFloat16"/> or <see cref="Half"/>) to float.</summary>
    public static void ToSingle<T>(ReadOnlySpan<T> source, Span<float> destination)
        where T : unmanaged
    {
        if (typeof(T) == typeof(BFloat16))
        {
            ToSingle(MemoryMarshal.Cast<T, BFloat16>(source), destination);
        }
        else if (typeof(T) == typeof(Half))
        {
            ToSingle(MemoryMarshal.Cast<T, Half>(source), destination);
        }
        else if (typeof(T) == typeof(float))
        {
            CheckLengths(source.Length, destination.Length);
            MemoryMarshal.Cast<T, float>(source).CopyTo(destination);
        }
        else
        {
            throw new NotSupportedException($"Element type {typeof(T).Name} cannot be widened to float.");
        }
    }

    /// <summary>Narrows float values to a supported 16-bit element type (<see cref="BFloat16"/> or <see cref="Half"/>).</summary>
    public static void FromSingle<T>(ReadOnlySpan<float> source, Span<T> destination)
        where T : unmanaged
    {
        if (typeof(T) == typeof(BFloat16))
        {
            FromSingle(source, MemoryMarshal.Cast<T, BFloat16>(destination));
        }
        else if (typeof(T) == typeof(Half))
        {
            FromSingle(source, MemoryMarshal.Cast<T, Half>(destination));
        }
        else if (typeof(T) == typeof(float))
        {
            CheckLengths(source.Length, destination.Length);
            source.CopyTo(MemoryMarshal.Cast<T, float>(destination));
        }
        else
        {
            throw new NotSupportedException($"Element type {typeof(T).Name} cannot be narrowed from float.");
        }
    }

    /// <summary>Converts one value of a supported element type to float.</summary>
    public static float ToSingle<T>(T value)
        where T : unmanaged
    {
        if (typeof(T) == typeof(BFloat16))
        {
            return (float)Unsafe.As<T, BFloat16>(ref value);
        }

        if (typeof(T) == typeof(Half))
        {
            return (float)Unsafe.As<T, Half>(ref value);
        }

        if (typeof(T) == typeof(float))
        {
            return Unsafe.As<T, float>(ref value);
        }

        throw new NotSupportedException($"Element type {typeof(T).Name} cannot be widened to float.");
    }

    /// <summary>Converts one float to a supported element type with round-to-nearest-even.</summary>
    public static T FromSingle<T>(float value)
        where T : unmanaged
    {
        if (typeof(T) == typeof(BFloat16))
        {
            var result = (BFloat16)value;
            return Unsafe.As<BFloat16, T>(ref result);
        }

        if (typeof(T) == typeof(Half))
        {
            var result = (Half)value;
            return Unsafe.As<Half, T>(ref result);
        }

        if (typeof(T) == typeof(float))
        {
            return Unsafe.As<float, T>(ref value);
        }

        throw new NotSupportedException($"Element type {typeof(T).Name} cannot be narrowed from float.");
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Round256(Vector256<uint> bits)
    {
        var isNaN = Vector256.GreaterThan(bits & Vector256.Create(0x7FFF_FFFFu), Vector256.Create(0x7F80_0000u));
        var lsb = Vector256.ShiftRightLogical(bits, 16) & Vector256<uint>.One;
        var rounded = Vector256.ShiftRightLogical(bits + Vector256.Create(0x7FFFu) + lsb, 16);
        var quiet = Vector256.ShiftRightLogical(bits, 16) | Vector256.Create(0x40u);
        return Vector256.ConditionalSelect(isNaN, quiet, rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> Round128(Vector128<uint> bits)
    {
        var isNaN = Vector128.GreaterThan(bits & Vector128.Create(0x7FFF_FFFFu), Vector128.Create(0x7F80_0000u));
        var lsb = Vector128.ShiftRightLogical(bits, 16) & Vector128<uint>.One;
        var rounded = Vector128.ShiftRightLogical(bits + Vector128.Create(0x7FFFu) + lsb, 16);
        var quiet = Vector128.ShiftRightLogical(bits, 16) | Vector128.Create(0x40u);
        return Vector128.ConditionalSelect(isNaN, quiet, rounded);
    }

    private static void CheckLengths(int sourceLength, int destinationLength)
    {
        if (destinationLength < sourceLength)
        {
            throw new ArgumentException(
                $"Destination is too short: {destinationLength} elements for {sourceLength} source elements.",
                "destination");
        }
    }
}
