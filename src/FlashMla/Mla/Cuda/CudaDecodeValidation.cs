using FlashMla.Cuda;
using FlashMla.Tensors;

namespace FlashMla.Mla.Cuda;

/// <summary>The checks the CUDA backend adds to <see cref="MlaDecodeValidation"/>: device addresses, alignment, contexts.</summary>
internal static class CudaDecodeValidation
{
    /// <summary>The alignment of q, the KV cache and the output rows: the kernels load and store 16-byte vectors.</summary>
    public const int VectorBytes = 16;

    /// <summary>Throws unless <paramref name="pointer"/> is a non-null address aligned to <paramref name="alignment"/> bytes.</summary>
    public static void RequireAddress(ulong pointer, int alignment, string paramName)
    {
        if (pointer == 0)
        {
            throw new ArgumentException($"{paramName} has a null device address.", paramName);
        }

        if (pointer % (ulong)alignment != 0)
        {
            throw new ArgumentException($"{paramName}'s device address 0x{pointer:x} is not {alignment}-byte aligned.", paramName);
        }
    }

    /// <summary>Throws unless a tensor's address and every stride but the last are multiples of <paramref name="alignment"/> bytes.</summary>
    public static void RequireDeviceLayout(ulong pointer, TensorLayout layout, int elementBytes, int alignment, string paramName)
    {
        RequireAddress(pointer, alignment, paramName);
        var elements = alignment / elementBytes;
        for (var d = 0; d < layout.Rank - 1; d++)
        {
            if (layout.Shape[d] > 1 && layout.Strides[d] % elements != 0)
            {
                throw new ArgumentException(
                    $"{paramName}'s stride {layout.Strides[d]} of dimension {d} is not a multiple of {elements} elements ({alignment} bytes), which the CUDA kernels' vector loads need ({layout}).",
                    paramName);
            }
        }
    }

    /// <summary>Throws unless the stream belongs to the context.</summary>
    public static void RequireContext(CudaStream stream, CudaContext context)
    {
        if (stream.Context.Handle != context.Handle)
        {
            throw new ArgumentException("The stream belongs to another context.", nameof(stream));
        }
    }

    /// <summary>Throws unless the plan is live and was created by the decoder that keeps <paramref name="book"/>.</summary>
    public static void RequirePlan(CudaDecodePlan plan, CudaContext context, CudaPlanBook book)
    {
        ObjectDisposedException.ThrowIf(plan.IsDisposed, plan);
        if (plan.Context.Handle != context.Handle)
        {
            throw new ArgumentException("The plan belongs to another context.", nameof(plan));
        }

        if (!ReferenceEquals(plan.Book, book))
        {
            throw new ArgumentException("The plan was created by another decoder; use it with the decoder that created it.", nameof(plan));
        }
    }

    /// <summary>Checks <c>UpdatePlan</c>'s lengths tensor: [b] of the plan, contiguous, 4-byte aligned.</summary>
    public static void RequireSeqlens(DeviceTensor<int> cacheSeqlens, int batch)
    {
        var layout = cacheSeqlens.Layout;
        if (layout.Rank != 1 || layout.Shape[0] != batch)
        {
            throw new ArgumentException($"cacheSeqlens must have shape [{batch}] (the plan's batch); got {TensorLayout.FormatDims(layout.Shape)}.", nameof(cacheSeqlens));
        }

        if (batch > 1 && layout.Strides[0] != 1)
        {
            throw new ArgumentException($"cacheSeqlens must be contiguous; got {layout}.", nameof(cacheSeqlens));
        }

        RequireAddress(cacheSeqlens.Pointer, sizeof(int), nameof(cacheSeqlens));
    }
}
