using System.Globalization;

namespace FlashMla.Mla;

/// <summary>
/// A request of a <see cref="PagedKvCacheAllocator"/>: the index of its slot and the slot's
/// generation, so that the id of a freed request is not mistaken for a later request that reuses
/// the slot.
/// </summary>
public readonly record struct KvRequestId
{
    internal KvRequestId(int index, int generation)
    {
        Index = index;
        Generation = generation;
    }

    /// <summary>The request's slot in its allocator (slots of freed requests are reused).</summary>
    public int Index { get; }

    /// <summary>1 + how many requests held the slot before this one (0 only in <c>default(KvRequestId)</c>, which is never live).</summary>
    public int Generation { get; }

    /// <summary>Formats as "request 3 (generation 1)".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"request {Index} (generation {Generation})");
}
