using FlashMla.Tensors;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// A paged KV cache in device memory: the blocks tensor
/// <c>[num_blocks, page_block_size, h_kv, Format.ElementsPerToken]</c> and how a token is stored.
/// </summary>
/// <typeparam name="T">The storage element type (<see cref="Numerics.BFloat16"/> or <see cref="Half"/> for dense formats).</typeparam>
/// <param name="Blocks">The blocks.</param>
/// <param name="Format">The storage format.</param>
public sealed record DeviceKvCache<T>(DeviceTensor<T> Blocks, KvCacheFormat Format)
    where T : unmanaged
{
    /// <summary>A dense cache of <typeparamref name="T"/> values whose last dimension is the head dimension.</summary>
    /// <param name="blocks">The blocks.</param>
    /// <returns>The cache.</returns>
    public static DeviceKvCache<T> Dense(DeviceTensor<T> blocks)
    {
        ArgumentNullException.ThrowIfNull(blocks, "kCache");
        return new(blocks, KvCacheFormat.DenseOf<T>(blocks.Layout));
    }
}
