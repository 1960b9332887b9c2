using FlashMla.Numerics;

namespace FlashMla.Tensors;

/// <summary>
/// The element types of attention tensors (q, the KV cache, the output). The values are the
/// kernels' element codes (<c>ElementCode</c> in kernels/include/kernel_desc.cuh).
/// </summary>
public enum ElementType
{
    /// <summary>bfloat16 (<see cref="Numerics.BFloat16"/>), 2 bytes.</summary>
    BFloat16 = 1,

    /// <summary>IEEE half (<see cref="Half"/>), 2 bytes.</summary>
    Float16 = 2,
}

/// <summary>Facts about <see cref="ElementType"/>: sizes, short names and the .NET types that hold them.</summary>
public static class ElementTypes
{
    /// <summary>Every element type, in enum order.</summary>
    public static IReadOnlyList<ElementType> All { get; } = [ElementType.BFloat16, ElementType.Float16];

    /// <summary>The element type a .NET type holds, or null when it holds none.</summary>
    /// <typeparam name="T">The .NET element type.</typeparam>
    /// <returns><see cref="ElementType.BFloat16"/> for <see cref="BFloat16"/>, <see cref="ElementType.Float16"/> for <see cref="Half"/>, else null.</returns>
    public static ElementType? TryOf<T>()
        where T : unmanaged =>
        typeof(T) == typeof(BFloat16) ? ElementType.BFloat16
        : typeof(T) == typeof(Half) ? ElementType.Float16
        : null;

    /// <summary>The element type a .NET type holds.</summary>
    /// <typeparam name="T"><see cref="BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <param name="paramName">The parameter to name in the exception.</param>
    /// <returns>The element type.</returns>
    /// <exception cref="ArgumentException"><typeparamref name="T"/> is no attention element type.</exception>
    public static ElementType Of<T>(string paramName)
        where T : unmanaged =>
        TryOf<T>() ?? throw new ArgumentException(
            $"Element type {typeof(T).FullName} is not supported; expected {typeof(BFloat16).FullName} (bf16) or {typeof(Half).FullName} (fp16).",
            paramName);

    /// <summary>Parses a short name ("bf16", "fp16").</summary>
    /// <param name="name">The name.</param>
    /// <param name="type">The element type.</param>
    /// <returns>Whether the name is known.</returns>
    public static bool TryParse(string? name, out ElementType type)
    {
        foreach (var candidate in All)
        {
            if (string.Equals(candidate.ShortName(), name, StringComparison.Ordinal))
            {
                type = candidate;
                return true;
            }
        }

        type = default;
        return false;
    }

    extension(ElementType type)
    {
        /// <summary>Bytes per element.</summary>
        public int SizeInBytes => type switch
        {
            ElementType.BFloat16 or ElementType.Float16 => 2,
            _ => throw Unknown(type),
        };

        /// <summary>The .NET type that holds one element.</summary>
        public Type ClrType => type switch
        {
            ElementType.BFloat16 => typeof(BFloat16),
            ElementType.Float16 => typeof(Half),
            _ => throw Unknown(type),
        };

        /// <summary>The short name: "bf16" or "fp16".</summary>
        /// <returns>The name.</returns>
        public string ShortName() => type switch
        {
            ElementType.BFloat16 => "bf16",
            ElementType.Float16 => "fp16",
            _ => throw Unknown(type),
        };
    }

    private static ArgumentOutOfRangeException Unknown(ElementType type) =>
        new(nameof(type), type, "Unknown element type.");
}
