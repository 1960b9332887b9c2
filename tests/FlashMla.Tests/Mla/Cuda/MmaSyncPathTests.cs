using FlashMla.Kernels;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;
using FlashMla.Tensors;
using FlashMla.Tests.Kernels;

namespace FlashMla.Tests.Mla.Cuda;

/// <summary>
/// The mma.sync kernel path's choices, from the descriptors its module declares in the embedded PTX
/// (no GPU needed): which variant runs for a row count and a shared-memory limit, its grid, and
/// which problems it refuses.
/// </summary>
public sealed class MmaSyncPathTests
{
    /// <summary>The opt-in shared memory per block of sm_90 (H100, H200) and of sm_80 (A100).</summary>
    private const int Sm90Limit = 232_448;
    private const int Sm80Limit = 166_912;

    public static TheoryData<string> Targets => new(KernelLibrary.TargetsOf(MmaSyncPath.Registration.Module));

    private static MlaDecodeShape Shape(int queryLength, int queryHeads, int kvHeads) =>
        new(Batch: 3, QueryLength: queryLength, QueryHeads: queryHeads, KvHeads: kvHeads, HeadDim: 576, HeadDimV: 512, NumBlocks: 10, PageBlockSize: 64, MaxBlocksPerSequence: 4);

    [Theory]
    [MemberData(nameof(Targets))]
    public void Variant_IsTheSmallestThatHoldsTheRows_WithTheDeepestPipelineThatFits(string target)
    {
        var variants = PtxConstants.Descriptors(target, MmaSyncPath.Registration.Module);
        foreach (var type in ElementTypes.All)
        {
            foreach (var (rows, expected) in new[] { (1, 16), (16, 16), (17, 32), (32, 32), (33, 64), (64, 64), (512, 64) })
            {
                var chosen = MmaSyncPath.Choose(variants, type, rows, Sm90Limit)!;
                Assert.Equal(expected, chosen.RowsPerCta);
                Assert.Equal(2, chosen.Stages);
                Assert.Equal(type, chosen.QueryType);

                // With sm_80's limit only the one-stage 64-row kernel fits.
                var small = MmaSyncPath.Choose(variants, type, rows, Sm80Limit)!;
                Assert.Equal((64, 1), (small.RowsPerCta, small.Stages));
                Assert.True(small.SharedMemoryBytes <= Sm80Limit);
            }

            Assert.Null(MmaSyncPath.Choose(variants, type, 16, variants.Min(d => d.SharedMemoryBytes) - 1));
        }

        Assert.Equal("mla_decode_splitkv_bf16_m32", MmaSyncPath.Choose(variants, ElementType.BFloat16, 20, Sm90Limit)!.Entry);
        Assert.Equal("mla_decode_splitkv_fp16_m64_1stage", MmaSyncPath.Choose(variants, ElementType.Float16, 20, Sm80Limit)!.Entry);
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void Grids_FollowTheDescriptors(string target)
    {
        var variants = PtxConstants.Descriptors(target, MmaSyncPath.Registration.Module);
        var shape = Shape(2, 128, 2);
        var chosen = MmaSyncPath.Choose(variants, ElementType.BFloat16, shape.RowsPerKvHead, Sm90Limit)!;
        Assert.Equal(new FlashMla.Cuda.Dim3(2, 2, 7), MmaSyncPath.Grid(shape, chosen.RowsPerCta, numParts: 7)); // 128 rows → 2 CTAs of 64
        Assert.Equal(256, chosen.Threads);
        Assert.Equal(new FlashMla.Cuda.Dim3(1, 1, 5), MmaSyncPath.Grid(Shape(1, 16, 1), 16, numParts: 5));

        var combine = PtxConstants.Descriptors(target, DecodeSharedKernels.CombineModule).Single(d => d.OutputType == ElementType.BFloat16);
        Assert.Equal(new FlashMla.Cuda.Dim3(16, 2, 3), DecodeSharedKernels.CombineGrid(shape, combine.RowsPerCta)); // one warp per row, 8 rows per CTA
        Assert.Equal(256, combine.Threads);
    }

    [Fact]
    public void Support_NeedsOneElementTypeForQTheCacheAndTheOutput()
    {
        var shape = Shape(1, 16, 1);
        ElementType[] types = [ElementType.BFloat16, ElementType.Float16];
        Assert.True(MmaSyncPath.Support(new MlaDecodeProblem(shape, ElementType.BFloat16, KvCacheFormat.Dense(ElementType.BFloat16), ElementType.BFloat16), types).IsSupported);
        Assert.True(MmaSyncPath.Support(new MlaDecodeProblem(shape, ElementType.Float16, KvCacheFormat.Dense(ElementType.Float16), ElementType.Float16), types).IsSupported);

        var kv = MmaSyncPath.Support(new MlaDecodeProblem(shape, ElementType.BFloat16, KvCacheFormat.Dense(ElementType.Float16), ElementType.BFloat16), types);
        Assert.False(kv.IsSupported);
        Assert.Equal("kCache", kv.ParamName);
        Assert.Contains("one element type", kv.Reason, StringComparison.Ordinal);

        var output = MmaSyncPath.Support(new MlaDecodeProblem(shape, ElementType.Float16, KvCacheFormat.Dense(ElementType.Float16), ElementType.BFloat16), types);
        Assert.False(output.IsSupported);
        Assert.Equal("output", output.ParamName);

        var missing = MmaSyncPath.Support(new MlaDecodeProblem(shape, ElementType.Float16, KvCacheFormat.Dense(ElementType.Float16), ElementType.Float16), [ElementType.BFloat16]);
        Assert.Equal("q", missing.ParamName);
    }

    [Fact]
    public void Paths_AreListedWithTheTargetsTheirModulesAreBuiltFor()
    {
        var paths = CudaMlaDecoder.DescribePaths("sm_90a");
        Assert.Equal(DecodeKernelPaths.All.Select(r => r.Name), paths.Select(p => p.Path));
        Assert.Contains(paths, p => p.Path == MmaSyncPath.Registration.Name && p.IsAvailable);
        Assert.All(CudaMlaDecoder.DescribePaths("sm_99"), p => Assert.False(p.IsAvailable));
    }
}
