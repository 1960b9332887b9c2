using System.Runtime.InteropServices;

namespace FlashMla.Cuda;

/// <summary><c>CUtensorMapDataType</c> (cuda.h, CUDA ≥ 12.0).</summary>
public enum TensorMapDataType
{
    /// <summary>CU_TENSOR_MAP_DATA_TYPE_UINT8.</summary>
    UInt8 = 0,

    /// <summary>CU_TENSOR_MAP_DATA_TYPE_UINT16.</summary>
    UInt16 = 1,

    /// <summary>CU_TENSOR_MAP_DATA_TYPE_UINT32.</summary>
    UInt32 = 2,

    /// <summary>CU_TENSOR_MAP_DATA_TYPE_INT32.</summary>
    Int32 = 3,

    /// <summary>CU_TENSOR_MAP_DATA_TYPE_UINT64.</summary>
    UInt64 = 4,

    /// <summary>CU_TENSOR_MAP_DATA_TYPE_INT64.</summary>
    Int64 = 5,

    /// <summary>CU_TENSOR_MAP_DATA_TYPE_FLOAT16.</summary>
    Float16 = 6,

    /// <summary>CU_TENSOR_MAP_DATA_TYPE_FLOAT32.</summary>
    Float32 = 7,

    /// <summary>CU_TENSOR_MAP_DATA_TYPE_FLOAT64.</summary>
    Float64 = 8,

    /// <summary>CU_TENSOR_MAP_DATA_TYPE_BFLOAT16.</summary>
    BFloat16 = 9,
}

/// <summary><c>CUtensorMapInterleave</c>.</summary>
public enum TensorMapInterleave
{
    /// <summary>CU_TENSOR_MAP_INTERLEAVE_NONE.</summary>
    None = 0,

    /// <summary>CU_TENSOR_MAP_INTERLEAVE_16B.</summary>
    Interleave16B = 1,

    /// <summary>CU_TENSOR_MAP_INTERLEAVE_32B.</summary>
    Interleave32B = 2,
}

/// <summary><c>CUtensorMapSwizzle</c>.</summary>
public enum TensorMapSwizzle
{
    /// <summary>CU_TENSOR_MAP_SWIZZLE_NONE.</summary>
    None = 0,

    /// <summary>CU_TENSOR_MAP_SWIZZLE_32B.</summary>
    Swizzle32B = 1,

    /// <summary>CU_TENSOR_MAP_SWIZZLE_64B.</summary>
    Swizzle64B = 2,

    /// <summary>CU_TENSOR_MAP_SWIZZLE_128B.</summary>
    Swizzle128B = 3,
}

/// <summary><c>CUtensorMapL2promotion</c>.</summary>
public enum TensorMapL2Promotion
{
    /// <summary>CU_TENSOR_MAP_L2_PROMOTION_NONE.</summary>
    None = 0,

    /// <summary>CU_TENSOR_MAP_L2_PROMOTION_L2_64B.</summary>
    L2Promotion64B = 1,

    /// <summary>CU_TENSOR_MAP_L2_PROMOTION_L2_128B.</summary>
    L2Promotion128B = 2,

    /// <summary>CU_TENSOR_MAP_L2_PROMOTION_L2_256B.</summary>
    L2Promotion256B = 3,
}

/// <summary><c>CUtensorMapFloatOOBfill</c>.</summary>
public enum TensorMapOobFill
{
    /// <summary>CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE: out-of-bounds elements read as zero.</summary>
    None = 0,

    /// <summary>CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA.</summary>
    NanRequestZeroFma = 1,
}

/// <summary>
/// A TMA descriptor (<c>CUtensorMap</c>): 128 opaque bytes, encoded by the driver with
/// <c>cuTensorMapEncodeTiled</c>. Blittable, so it can be a field of a kernel parameter struct.
/// </summary>
/// <remarks>
/// The C type is 64-byte aligned. A C# struct cannot declare that alignment, so when this is a
/// field of a kernel parameter struct, place it at an offset that is a multiple of
/// <see cref="Alignment"/> (first, or with <c>[StructLayout(LayoutKind.Explicit)]</c>) so that the
/// C# layout matches the kernel's. Encoding happens in a 64-byte-aligned scratch buffer, as the
/// driver requires, and the result is copied here.
/// </remarks>
[StructLayout(LayoutKind.Sequential, Size = SizeInBytes)]
public unsafe struct TensorMap : IEquatable<TensorMap>
{
    /// <summary>The size of a descriptor in bytes (<c>CU_TENSOR_MAP_NUM_QWORDS</c> · 8).</summary>
    public const int SizeInBytes = 128;

    /// <summary>The alignment the C type has, in bytes.</summary>
    public const int Alignment = 64;

    private fixed ulong _opaque[SizeInBytes / sizeof(ulong)];

    /// <summary>Whether the descriptor holds anything (an encoded map is never all zero).</summary>
    public readonly bool IsEncoded
    {
        get
        {
            for (var i = 0; i < SizeInBytes / sizeof(ulong); i++)
            {
                if (_opaque[i] != 0)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>
    /// Encodes a tiled tensor map (<c>cuTensorMapEncodeTiled</c>). Dimension 0 is the innermost
    /// (fastest-varying) one: for a row-major matrix of R rows and C columns,
    /// <c>globalDims = [C, R]</c> and <c>globalStridesBytes = [C · elementSize]</c>.
    /// </summary>
    /// <param name="context">The context (made current).</param>
    /// <param name="dataType">The element type.</param>
    /// <param name="globalAddress">The tensor's device address (16-byte aligned).</param>
    /// <param name="globalDims">The size of each dimension, innermost first (rank 1 to 5).</param>
    /// <param name="globalStridesBytes">The stride in bytes of dimensions 1 … rank−1 (multiples of 16).</param>
    /// <param name="boxDims">The tile size in elements of each dimension (each ≤ 256).</param>
    /// <param name="elementStrides">The traversal stride of each dimension; empty means all 1.</param>
    /// <param name="interleave">The interleave layout.</param>
    /// <param name="swizzle">The shared-memory swizzle.</param>
    /// <param name="l2Promotion">The L2 promotion.</param>
    /// <param name="oobFill">How out-of-bounds elements are filled.</param>
    /// <returns>The descriptor.</returns>
    /// <exception cref="ArgumentException">The spans' lengths do not match the rank.</exception>
    /// <exception cref="NotSupportedException">The driver predates CUDA 12.0.</exception>
    /// <exception cref="CudaException">The driver rejected the parameters.</exception>
    public static TensorMap EncodeTiled(
        CudaContext context,
        TensorMapDataType dataType,
        ulong globalAddress,
        ReadOnlySpan<ulong> globalDims,
        ReadOnlySpan<ulong> globalStridesBytes,
        ReadOnlySpan<uint> boxDims,
        ReadOnlySpan<uint> elementStrides = default,
        TensorMapInterleave interleave = TensorMapInterleave.None,
        TensorMapSwizzle swizzle = TensorMapSwizzle.None,
        TensorMapL2Promotion l2Promotion = TensorMapL2Promotion.None,
        TensorMapOobFill oobFill = TensorMapOobFill.None)
    {
        ArgumentNullException.ThrowIfNull(context);
        var rank = globalDims.Length;
        if (rank is < 1 or > 5)
        {
            throw new ArgumentException($"A tensor map has rank 1 to 5; got {rank}.", nameof(globalDims));
        }

        if (globalStridesBytes.Length != rank - 1)
        {
            throw new ArgumentException($"Expected {rank - 1} byte strides (dimensions 1 … {rank - 1}); got {globalStridesBytes.Length}.", nameof(globalStridesBytes));
        }

        if (boxDims.Length != rank)
        {
            throw new ArgumentException($"Expected {rank} box dimensions; got {boxDims.Length}.", nameof(boxDims));
        }

        if (!elementStrides.IsEmpty && elementStrides.Length != rank)
        {
            throw new ArgumentException($"Expected {rank} element strides (or none); got {elementStrides.Length}.", nameof(elementStrides));
        }

        var api = context.Api;
        if (api.cuTensorMapEncodeTiled == null)
        {
            throw new NotSupportedException($"cuTensorMapEncodeTiled needs a CUDA 12.0 driver; this one is CUDA {context.Driver.VersionString}.");
        }

        context.MakeCurrent();
        var dims = stackalloc ulong[5];
        var strides = stackalloc ulong[5];
        var box = stackalloc uint[5];
        var estrides = stackalloc uint[5];
        for (var i = 0; i < rank; i++)
        {
            dims[i] = globalDims[i];
            box[i] = boxDims[i];
            estrides[i] = elementStrides.IsEmpty ? 1u : elementStrides[i];
            if (i < rank - 1)
            {
                strides[i] = globalStridesBytes[i];
            }
        }

        var scratch = (TensorMap*)NativeMemory.AlignedAlloc(SizeInBytes, Alignment);
        try
        {
            *scratch = default;
            context.Check(api.cuTensorMapEncodeTiled(
                scratch,
                (int)dataType,
                (uint)rank,
                (void*)globalAddress,
                dims,
                strides,
                box,
                estrides,
                (int)interleave,
                (int)swizzle,
                (int)l2Promotion,
                (int)oobFill));
            return *scratch;
        }
        finally
        {
            NativeMemory.AlignedFree(scratch);
        }
    }

    /// <summary>
    /// Encodes a 2-D tiled map over a row-major matrix of <paramref name="rows"/> ×
    /// <paramref name="columns"/> elements whose rows are <paramref name="rowStrideElements"/> apart.
    /// </summary>
    /// <param name="context">The context.</param>
    /// <param name="dataType">The element type.</param>
    /// <param name="elementSize">The element size in bytes.</param>
    /// <param name="globalAddress">The matrix's device address.</param>
    /// <param name="rows">The number of rows.</param>
    /// <param name="columns">The number of columns.</param>
    /// <param name="rowStrideElements">The row stride in elements.</param>
    /// <param name="boxRows">The tile height.</param>
    /// <param name="boxColumns">The tile width.</param>
    /// <param name="swizzle">The shared-memory swizzle.</param>
    /// <returns>The descriptor.</returns>
    public static TensorMap EncodeTiled2D(
        CudaContext context,
        TensorMapDataType dataType,
        int elementSize,
        ulong globalAddress,
        ulong rows,
        ulong columns,
        ulong rowStrideElements,
        uint boxRows,
        uint boxColumns,
        TensorMapSwizzle swizzle = TensorMapSwizzle.None)
    {
        ReadOnlySpan<ulong> dims = [columns, rows];
        ReadOnlySpan<ulong> strides = [rowStrideElements * (ulong)elementSize];
        ReadOnlySpan<uint> box = [boxColumns, boxRows];
        return EncodeTiled(context, dataType, globalAddress, dims, strides, box, default, TensorMapInterleave.None, swizzle);
    }

    /// <summary>Reads one of the 16 opaque 64-bit words.</summary>
    /// <param name="index">0 … 15.</param>
    /// <returns>The word.</returns>
    public readonly ulong GetWord(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, SizeInBytes / sizeof(ulong));
        return _opaque[index];
    }

    /// <inheritdoc/>
    public readonly bool Equals(TensorMap other)
    {
        for (var i = 0; i < SizeInBytes / sizeof(ulong); i++)
        {
            if (_opaque[i] != other._opaque[i])
            {
                return false;
            }
        }

        return true;
    }

    /// <inheritdoc/>
    public override readonly bool Equals(object? obj) => obj is TensorMap other && Equals(other);

    /// <inheritdoc/>
    public override readonly int GetHashCode()
    {
        var hash = default(HashCode);
        for (var i = 0; i < SizeInBytes / sizeof(ulong); i++)
        {
            hash.Add(_opaque[i]);
        }

        return hash.ToHashCode();
    }

    /// <summary>Bitwise equality.</summary>
    /// <param name="left">The left operand.</param>
    /// <param name="right">The right operand.</param>
    /// <returns>True when all 128 bytes are equal.</returns>
    public static bool operator ==(TensorMap left, TensorMap right) => left.Equals(right);

    /// <summary>Bitwise inequality.</summary>
    /// <param name="left">The left operand.</param>
    /// <param name="right">The right operand.</param>
    /// <returns>True when any byte differs.</returns>
    public static bool operator !=(TensorMap left, TensorMap right) => !left.Equals(right);
}
