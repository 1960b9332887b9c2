using FlashMla.Tensors;

namespace FlashMla.Mla;

/// <summary>
/// A copy on write that a <see cref="PagedKvCacheAllocator"/> asks for: the first
/// <see cref="Tokens"/> token slots of page <see cref="SourcePage"/> are to be copied into page
/// <see cref="DestinationPage"/> of every layer's cache, before the step's new tokens are
/// written.
/// </summary>
/// <param name="SourcePage">The shared page (block id) to read.</param>
/// <param name="DestinationPage">The new page (block id) of the request that writes next.</param>
/// <param name="Tokens">The token slots to copy, 1 … page_block_size − 1.</param>
public readonly record struct PageCopy(int SourcePage, int DestinationPage, int Tokens);

/// <summary>Where a <see cref="PageCopy"/> lies in a cache tensor [num_blocks, page_block_size, h_kv, d].</summary>
internal static class PageCopyLayout
{
    /// <summary>
    /// Checks that a cache tensor holds the allocator's pages: rank 4, at least
    /// <paramref name="numPages"/> blocks of <paramref name="pageBlockSize"/> tokens, and pages
    /// that do not overlap (a copy must not touch another page).
    /// </summary>
    public static void RequireCache(TensorLayout kCache, int numPages, int pageBlockSize, string paramName)
    {
        ArgumentNullException.ThrowIfNull(kCache, paramName);
        if (kCache.Rank != 4 || kCache.Shape[0] < numPages || kCache.Shape[1] != pageBlockSize)
        {
            throw new ArgumentException(
                $"{paramName} must have shape [num_blocks ≥ {numPages}, {pageBlockSize}, h_kv, d] (the allocator's pages and page_block_size); got {kCache}.",
                paramName);
        }

        var page = Page(kCache, pageBlockSize);
        if (kCache.Shape[0] > 1 && kCache.Strides[0] < page.RequiredLength)
        {
            throw new ArgumentException(
                $"{paramName}'s pages overlap: a page spans {page.RequiredLength} elements but the block stride is {kCache.Strides[0]} ({kCache}).",
                paramName);
        }
    }

    /// <summary>The layout of the first <paramref name="tokens"/> token slots of one page: [tokens, h_kv, d].</summary>
    public static TensorLayout Page(TensorLayout kCache, int tokens) =>
        new([tokens, kCache.Shape[2], kCache.Shape[3]], [kCache.Strides[1], kCache.Strides[2], kCache.Strides[3]]);

    /// <summary>The element offset of a page's first slot.</summary>
    public static long Offset(TensorLayout kCache, int page) => page * kCache.Strides[0];
}
