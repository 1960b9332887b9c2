namespace FlashMla.Numerics;

/// <summary>Placeholder.</summary>
public static class BFloat16Placeholder
{
}
