using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FlashMla.Mla.Cpu;

/// <summary>
/// A float SIMD register of a fixed width, so that one generic kernel serves 128-, 256- and
/// 512-bit vectors (the JIT compiles a separate, fully inlined copy for each struct argument).
/// </summary>
/// <typeparam name="TSelf">The implementing struct.</typeparam>
internal interface ISimdFloat<TSelf>
    where TSelf : struct, ISimdFloat<TSelf>
{
    /// <summary>Lanes per vector.</summary>
    static abstract int Count { get; }

    /// <summary>Whether the hardware runs this width natively.</summary>
    static abstract bool IsHardwareAccelerated { get; }

    /// <summary>Loads <see cref="Count"/> floats (unaligned).</summary>
    static abstract TSelf Load(ref readonly float source);

    /// <summary>Every lane set to one value.</summary>
    static abstract TSelf Broadcast(float value);

    /// <summary><c>a · b + addend</c>, rounded once.</summary>
    static abstract TSelf MultiplyAdd(TSelf a, TSelf b, TSelf addend);

    /// <summary>Stores <see cref="Count"/> floats (unaligned).</summary>
    static abstract void Store(TSelf value, ref float destination);

    /// <summary>Lane-wise sum.</summary>
    static abstract TSelf Add(TSelf a, TSelf b);

    /// <summary>Lane-wise difference.</summary>
    static abstract TSelf Subtract(TSelf a, TSelf b);

    /// <summary>Lane-wise product.</summary>
    static abstract TSelf Multiply(TSelf a, TSelf b);

    /// <summary>Lane-wise maximum.</summary>
    static abstract TSelf Max(TSelf a, TSelf b);
}

/// <summary>A 128-bit vector of 4 floats.</summary>
internal readonly struct SimdFloat128 : ISimdFloat<SimdFloat128>
{
    private readonly Vector128<float> _value;

    private SimdFloat128(Vector128<float> value) => _value = value;

    public static int Count => Vector128<float>.Count;

    public static bool IsHardwareAccelerated => Vector128.IsHardwareAccelerated;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat128 Load(ref readonly float source) => new(Vector128.LoadUnsafe(in source));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat128 Broadcast(float value) => new(Vector128.Create(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat128 MultiplyAdd(SimdFloat128 a, SimdFloat128 b, SimdFloat128 addend) =>
        new(Vector128.FusedMultiplyAdd(a._value, b._value, addend._value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(SimdFloat128 value, ref float destination) => value._value.StoreUnsafe(ref destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat128 Add(SimdFloat128 a, SimdFloat128 b) => new(a._value + b._value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat128 Subtract(SimdFloat128 a, SimdFloat128 b) => new(a._value - b._value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat128 Multiply(SimdFloat128 a, SimdFloat128 b) => new(a._value * b._value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat128 Max(SimdFloat128 a, SimdFloat128 b) => new(Vector128.Max(a._value, b._value));
}

/// <summary>A 256-bit vector of 8 floats.</summary>
internal readonly struct SimdFloat256 : ISimdFloat<SimdFloat256>
{
    private readonly Vector256<float> _value;

    private SimdFloat256(Vector256<float> value) => _value = value;

    public static int Count => Vector256<float>.Count;

    public static bool IsHardwareAccelerated => Vector256.IsHardwareAccelerated;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat256 Load(ref readonly float source) => new(Vector256.LoadUnsafe(in source));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat256 Broadcast(float value) => new(Vector256.Create(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat256 MultiplyAdd(SimdFloat256 a, SimdFloat256 b, SimdFloat256 addend) =>
        new(Vector256.FusedMultiplyAdd(a._value, b._value, addend._value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(SimdFloat256 value, ref float destination) => value._value.StoreUnsafe(ref destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat256 Add(SimdFloat256 a, SimdFloat256 b) => new(a._value + b._value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat256 Subtract(SimdFloat256 a, SimdFloat256 b) => new(a._value - b._value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat256 Multiply(SimdFloat256 a, SimdFloat256 b) => new(a._value * b._value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat256 Max(SimdFloat256 a, SimdFloat256 b) => new(Vector256.Max(a._value, b._value));
}

/// <summary>A 512-bit vector of 16 floats.</summary>
internal readonly struct SimdFloat512 : ISimdFloat<SimdFloat512>
{
    private readonly Vector512<float> _value;

    private SimdFloat512(Vector512<float> value) => _value = value;

    public static int Count => Vector512<float>.Count;

    public static bool IsHardwareAccelerated => Vector512.IsHardwareAccelerated;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat512 Load(ref readonly float source) => new(Vector512.LoadUnsafe(in source));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat512 Broadcast(float value) => new(Vector512.Create(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat512 MultiplyAdd(SimdFloat512 a, SimdFloat512 b, SimdFloat512 addend) =>
        new(Vector512.FusedMultiplyAdd(a._value, b._value, addend._value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(SimdFloat512 value, ref float destination) => value._value.StoreUnsafe(ref destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat512 Add(SimdFloat512 a, SimdFloat512 b) => new(a._value + b._value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat512 Subtract(SimdFloat512 a, SimdFloat512 b) => new(a._value - b._value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat512 Multiply(SimdFloat512 a, SimdFloat512 b) => new(a._value * b._value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SimdFloat512 Max(SimdFloat512 a, SimdFloat512 b) => new(Vector512.Max(a._value, b._value));
}
