namespace FlashMla.Mla;

/// <summary>
/// Thrown by a <see cref="PagedKvCacheAllocator"/> when an operation needs more free pages than
/// there are. The allocator's state is unchanged: no page was taken and no request was changed.
/// </summary>
public sealed class KvCacheOutOfPagesException : InvalidOperationException
{
    /// <summary>Creates an exception with no page counts.</summary>
    public KvCacheOutOfPagesException()
        : this("The KV cache has too few free pages.")
    {
    }

    /// <summary>Creates an exception with a message and no page counts.</summary>
    /// <param name="message">The error message.</param>
    public KvCacheOutOfPagesException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message, an inner exception and no page counts.</summary>
    /// <param name="message">The error message.</param>
    /// <param name="innerException">The underlying error.</param>
    public KvCacheOutOfPagesException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates an exception with the page counts.</summary>
    /// <param name="pagesNeeded">The pages the operation needed.</param>
    /// <param name="freePages">The pages that were free.</param>
    /// <param name="totalPages">The pages of the cache.</param>
    /// <param name="message">The error message.</param>
    public KvCacheOutOfPagesException(int pagesNeeded, int freePages, int totalPages, string message)
        : base(message)
    {
        PagesNeeded = pagesNeeded;
        FreePages = freePages;
        TotalPages = totalPages;
    }

    /// <summary>The pages the operation needed (0 when unknown).</summary>
    public int PagesNeeded { get; }

    /// <summary>The pages that were free (0 when unknown).</summary>
    public int FreePages { get; }

    /// <summary>The pages of the cache (0 when unknown).</summary>
    public int TotalPages { get; }
}
