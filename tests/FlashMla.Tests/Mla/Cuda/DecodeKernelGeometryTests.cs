using System.Runtime.InteropServices;
using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;

namespace FlashMla.Tests.Mla.Cuda;

/// <summary>The launch geometry of the decode kernels (no GPU needed).</summary>
public sealed class DecodeKernelGeometryTests
{
    [Fact]
    public void DecodeGeometry_FollowsArchitectureDoc()
    {
        var shape = new MlaDecodeShape(Batch: 3, QueryLength: 2, QueryHeads: 128, KvHeads: 2, HeadDim: 576, HeadDimV: 512, NumBlocks: 10, PageBlockSize: 64, MaxBlocksPerSequence: 4);
        var (grid, block) = DecodeKernelGeometry.Decode(shape, numParts: 7);
        Assert.Equal(new Dim3(2, 2, 7), grid); // rows = 2 · 64 = 128 → 2 tiles of 64
        Assert.Equal(new Dim3(256), block);
        var (combineGrid, combineBlock) = DecodeKernelGeometry.Combine(shape);
        Assert.Equal(new Dim3(16, 2, 3), combineGrid); // 8 rows per CTA
        Assert.Equal(new Dim3(256), combineBlock);

        // decode_splitkv.cu: 230,400 bytes at 64 rows with 2 stages, 156,672 with 1.
        Assert.Equal(230_912, DecodeKernelGeometry.DecodeSharedMemoryBytes(2, 64));
        Assert.Equal(157_184, DecodeKernelGeometry.DecodeSharedMemoryBytes(1, 64));
        Assert.Equal(16, DecodeKernelGeometry.RowsPerCta(1));
        Assert.Equal(16, DecodeKernelGeometry.RowsPerCta(16));
        Assert.Equal(32, DecodeKernelGeometry.RowsPerCta(17));
        Assert.Equal(64, DecodeKernelGeometry.RowsPerCta(33));
        Assert.Equal(64, DecodeKernelGeometry.RowsPerCta(512));
        Assert.Equal("mla_decode_splitkv_bf16_m32", DecodeKernelGeometry.DecodeKernel("bf16", 32, 2));
        Assert.Equal("mla_decode_splitkv_fp16_m64_1stage", DecodeKernelGeometry.DecodeKernel("fp16", 64, 1));
        var small = shape with { QueryLength = 1, QueryHeads = 16, KvHeads = 1 };
        Assert.Equal(new Dim3(1, 1, 5), DecodeKernelGeometry.Decode(small, numParts: 5).Grid);
    }
}
