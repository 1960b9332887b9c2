using FlashMla.Cuda;
using FlashMla.Tensors;

namespace FlashMla.Mla.Cuda;

/// <summary>Host ↔ device copies of <see cref="CudaMlaDecoder.DecodeHost{TQ, TKv, TOut}(HostTensor{TQ}, HostKvCache{TKv}, HostTensor{int}, HostTensor{int}, HostTensor{TOut}, HostTensor{float}, MlaDecodeOptions?)"/>.</summary>
internal static class HostTransfers
{
    /// <summary>Allocates a device buffer for the memory a host tensor spans and enqueues its upload.</summary>
    public static DeviceBuffer<TE> Upload<TE>(HostTensor<TE> tensor, CudaStream stream)
        where TE : unmanaged
    {
        var length = tensor.Layout.RequiredLength;
        var buffer = DeviceBuffer<TE>.Allocate(stream.Context, Math.Max(length, 1));
        try
        {
            buffer.CopyFromAsync(tensor.Span[..(int)length], stream);
            return buffer;
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>Copies contiguous row-major data into the elements of a (possibly strided) host tensor.</summary>
    public static void ScatterContiguous<TE>(ReadOnlySpan<TE> source, HostTensor<TE> destination)
        where TE : unmanaged
    {
        var layout = destination.Layout;
        var dst = destination.Span;
        if (layout.IsContiguous)
        {
            source[..(int)layout.ElementCount].CopyTo(dst);
            return;
        }

        var rank = layout.Rank;
        var shape = layout.Shape;
        var strides = layout.Strides;
        Span<long> index = stackalloc long[rank];
        long offset = 0;
        for (long i = 0; i < layout.ElementCount; i++)
        {
            dst[(int)offset] = source[(int)i];
            for (var d = rank - 1; d >= 0; d--)
            {
                index[d]++;
                offset += strides[d];
                if (index[d] < shape[d])
                {
                    break;
                }

                offset -= index[d] * strides[d];
                index[d] = 0;
            }
        }
    }
}
