using FlashMla.Numerics;

namespace FlashMla.Tensors;

/// <summary>The element types the decoders accept for q, k_cache and output, and their short names.</summary>
internal static class ElementTypes
{
    /// <summary>Whether <typeparamref name="T"/> is <see cref="BFloat16"/> or <see cref="Half"/>.</summary>
    public static bool IsSupported<T>()
        where T : unmanaged => typeof(T) == typeof(BFloat16) || typeof(T) == typeof(Half);

    /// <summary>"bf16" for <see cref="BFloat16"/>, "fp16" for <see cref="Half"/>.</summary>
    /// <exception cref="ArgumentException">Any other type.</exception>
    public static string NameOf<T>(string paramName = "q")
        where T : unmanaged
    {
        if (typeof(T) == typeof(BFloat16))
        {
            return "bf16";
        }

        if (typeof(T) == typeof(Half))
        {
            return "fp16";
        }

        throw Unsupported<T>(paramName);
    }

    /// <summary>Throws unless <typeparamref name="T"/> is a supported element type.</summary>
    /// <exception cref="ArgumentException"><typeparamref name="T"/> is not supported.</exception>
    public static void EnsureSupported<T>(string paramName = "q")
        where T : unmanaged
    {
        if (!IsSupported<T>())
        {
            throw Unsupported<T>(paramName);
        }
    }

    private static ArgumentException Unsupported<T>(string paramName) =>
        new($"Element type {typeof(T).FullName} is not supported; expected {typeof(BFloat16).FullName} (bf16) or {typeof(Half).FullName} (fp16).", paramName);
}
