using FlashMla.Tensors;

namespace FlashMla.Mla.Cpu;

/// <summary>
/// Writes new tokens into a paged KV cache on the host, with the semantics of
/// <c>CudaKvCacheWriter</c>: token i's row goes to slot <c>slotMapping[i]</c>, that is row
/// <c>slot % page_block_size</c> of page <c>slot / page_block_size</c>; slot −1 is padding and
/// is skipped; every other cache element stays as it was.
/// </summary>
/// <remarks>
/// The rows are copied bit for bit (bf16 or fp16; FP8 caches are not supported yet). The slots are
/// host-visible, so they are checked before anything is written: a slot outside
/// <c>[0, num_blocks · page_block_size)</c> or a slot used twice raises
/// <see cref="ArgumentOutOfRangeException"/> naming the token and the slot, and the cache is
/// unchanged (the CUDA writer, which only sees the slots on the device, writes the other tokens
/// and raises <see cref="MlaInputException"/> at its synchronization point).
/// </remarks>
public sealed class CpuKvCacheWriter
{
    /// <summary>
    /// Writes n latent rows: <paramref name="latent"/> [n, d] (h_kv = 1) or [n, h_kv, d], with d
    /// the cache's head dimension (576: 512 compressed-KV columns, then the 64-column RoPE key).
    /// </summary>
    /// <typeparam name="T"><see cref="Numerics.BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <param name="latent">The new rows; any token and head strides, rows contiguous.</param>
    /// <param name="slotMapping">int32 [n]: the slot of each token, or −1.</param>
    /// <param name="kCache">The cache, [num_blocks, page_block_size, h_kv, d], last dimension contiguous.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">A shape, stride or element type is not supported; ParamName names the parameter.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A slot is outside the cache, or repeated (ParamName <c>slotMapping</c>); nothing was written.</exception>
    public void Append<T>(HostTensor<T> latent, HostTensor<int> slotMapping, HostTensor<T> kCache)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(latent);
        ArgumentNullException.ThrowIfNull(slotMapping);
        ArgumentNullException.ThrowIfNull(kCache);
        _ = ElementTypes.Of<T>(nameof(kCache));
        var shape = KvCacheAppendValidation.ValidateCache(slotMapping.Layout, kCache.Layout);
        var source = KvCacheAppendValidation.ValidateSource(latent.Layout, shape, shape.HeadDim, nameof(latent));
        KvCacheAppendValidation.ValidateSlots(slotMapping, shape);
        Write(shape, latent.Span, source, latent.Span, source, KvCacheAppendValidation.CompressedDim, slotMapping, kCache);
    }

    /// <summary>
    /// Writes n rows given in two parts, concatenated on the way in: <paramref name="compressedKv"/>
    /// [n, 512] (or [n, h_kv, 512]) as columns 0–511 and <paramref name="rope"/> [n, 64] (or
    /// [n, h_kv, 64]) as columns 512–575 of a cache of head dimension 576.
    /// </summary>
    /// <typeparam name="T"><see cref="Numerics.BFloat16"/> or <see cref="Half"/>.</typeparam>
    /// <param name="compressedKv">The compressed KV rows; any token and head strides, rows contiguous.</param>
    /// <param name="rope">The RoPE keys; any token and head strides, rows contiguous.</param>
    /// <param name="slotMapping">int32 [n]: the slot of each token, or −1.</param>
    /// <param name="kCache">The cache, [num_blocks, page_block_size, h_kv, 576], last dimension contiguous.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">A shape, stride or element type is not supported, or the cache is not 576 wide; ParamName names the parameter.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A slot is outside the cache, or repeated (ParamName <c>slotMapping</c>); nothing was written.</exception>
    public void Append<T>(HostTensor<T> compressedKv, HostTensor<T> rope, HostTensor<int> slotMapping, HostTensor<T> kCache)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(compressedKv);
        ArgumentNullException.ThrowIfNull(rope);
        ArgumentNullException.ThrowIfNull(slotMapping);
        ArgumentNullException.ThrowIfNull(kCache);
        _ = ElementTypes.Of<T>(nameof(kCache));
        var shape = KvCacheAppendValidation.ValidateCache(slotMapping.Layout, kCache.Layout);
        KvCacheAppendValidation.RequireSplitForm(shape);
        var nope = KvCacheAppendValidation.ValidateSource(compressedKv.Layout, shape, KvCacheAppendValidation.CompressedDim, nameof(compressedKv));
        var ropeSource = KvCacheAppendValidation.ValidateSource(rope.Layout, shape, KvCacheAppendValidation.RopeDim, nameof(rope));
        KvCacheAppendValidation.ValidateSlots(slotMapping, shape);
        Write(shape, compressedKv.Span, nope, rope.Span, ropeSource, 0, slotMapping, kCache);
    }

    /// <summary>
    /// Copies each addressed row: columns [0, 512) from <paramref name="nope"/>, the rest from
    /// <paramref name="rope"/> starting at its column <paramref name="ropeColumn"/>.
    /// </summary>
    private static void Write<T>(
        KvCacheAppendShape shape,
        ReadOnlySpan<T> nope,
        KvAppendSource nopeSource,
        ReadOnlySpan<T> rope,
        KvAppendSource ropeSource,
        int ropeColumn,
        HostTensor<int> slotMapping,
        HostTensor<T> kCache)
        where T : unmanaged
    {
        var slots = slotMapping.Span;
        var slotStride = slotMapping.Layout.Strides[0];
        var cache = kCache.Span;
        var k = kCache.Layout.Strides;
        var compressed = KvCacheAppendValidation.CompressedDim;
        var ropeWidth = shape.RopeDim;
        for (var t = 0; t < shape.Tokens; t++)
        {
            var slot = slots[checked((int)(t * slotStride))];
            if (slot == KvCacheAppendValidation.PaddingSlot)
            {
                continue;
            }

            var block = slot / shape.PageBlockSize;
            var offset = slot % shape.PageBlockSize;
            for (var h = 0; h < shape.KvHeads; h++)
            {
                var dst = checked((int)((block * k[0]) + (offset * k[1]) + (h * k[2])));
                var fromNope = checked((int)((t * nopeSource.TokenStride) + (h * nopeSource.HeadStride)));
                nope.Slice(fromNope, compressed).CopyTo(cache.Slice(dst, compressed));
                if (ropeWidth > 0)
                {
                    var fromRope = checked((int)((t * ropeSource.TokenStride) + (h * ropeSource.HeadStride) + ropeColumn));
                    rope.Slice(fromRope, ropeWidth).CopyTo(cache.Slice(dst + compressed, ropeWidth));
                }
            }
        }
    }
}
