using FlashMla.Kernels;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;
using FlashMla.Tensors;
using FlashMla.Tests.Kernels;

namespace FlashMla.Tests.Mla.Cuda;

/// <summary>
/// The mma.sync kernel paths' choices, from the descriptors their modules declare in the embedded
/// PTX (no GPU needed): which path and variant run for a row count and a shared-memory limit, their
/// grids, and which problems they refuse.
/// </summary>
public sealed class MmaSyncPathTests
{
    /// <summary>The opt-in shared memory per block of sm_90 (H100, H200), of sm_80 (A100) and of sm_86 / sm_89 (RTX 30/40, A10, L4, L40S).</summary>
    private const int Sm90Limit = 232_448;
    private const int Sm80Limit = 166_912;
    private const int Sm86Limit = 101_376;

    /// <summary>The portable paths in the order the decoder asks them.</summary>
    private static readonly DecodePathRegistration[] PortablePaths = [.. DecodeKernelPaths.All.Where(r => r == MmaSyncPath.Registration || r == MmaSyncPath.CompactRegistration)];

    /// <summary>
    /// What a decoder runs on the portable paths under a limit: the first of them (in the order of
    /// <see cref="DecodeKernelPaths.All"/>) with a kernel that fits, and that path's choice.
    /// </summary>
    private static (string Path, KernelDescriptor Kernel)? Portable(string target, ElementType type, int rows, int limit)
    {
        foreach (var path in PortablePaths)
        {
            var variants = PtxConstants.Descriptors(target, path.Module);
            if (variants.Any(d => d.SharedMemoryBytes <= limit) && MmaSyncPath.Choose(variants, type, rows, limit) is { } chosen)
            {
                return (path.Name, chosen);
            }
        }

        return null;
    }

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
    public void CompactKernels_Fit99KB_WithMarginAndDescribeThemselves(string target)
    {
        Assert.Equal(KernelLibrary.TargetsOf(MmaSyncPath.Registration.Module), KernelLibrary.TargetsOf(MmaSyncPath.CompactRegistration.Module));
        var compact = PtxConstants.Descriptors(target, MmaSyncPath.CompactRegistration.Module);
        Assert.Equal(ElementTypes.All.Order(), compact.Select(d => d.QueryType!.Value).Order());
        foreach (var d in compact)
        {
            Assert.Equal((256, 16, 2), (d.Threads, d.RowsPerCta, d.Stages));
            Assert.Equal(78_464, d.SharedMemoryBytes);
            Assert.True(d.SharedMemoryBytes + 16_384 <= Sm86Limit, $"{d.Entry}: {d.SharedMemoryBytes} bytes leave less than 16 KiB of sm_86's {Sm86Limit}");
            Assert.Equal(0, d.SharedMemoryBytesPerRequest);
            Assert.Equal((d.QueryType, d.QueryType), (d.KvType, d.OutputType));
            Assert.Equal(0, d.HeadDim);
            Assert.Equal("DecodeParams", d.ParamStruct);
            Assert.Equal($"mla_decode_splitkv_compact_{d.QueryType!.Value.ShortName()}_m16", d.Entry);
        }

        // None of the full-size module's kernels fits in 99 KB: that path is unavailable there.
        Assert.All(PtxConstants.Descriptors(target, MmaSyncPath.Registration.Module), d => Assert.True(d.SharedMemoryBytes > Sm86Limit, d.Entry));
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void UnderEachLimit_ThePortablePathsRunTheirVariant_TheCompactOneOnlyWhereNothingElseFits(string target)
    {
        Assert.True(
            Array.IndexOf([.. DecodeKernelPaths.All], MmaSyncPath.Registration) < Array.IndexOf([.. DecodeKernelPaths.All], MmaSyncPath.CompactRegistration),
            "the compact path is asked after the full-size one");
        foreach (var type in ElementTypes.All)
        {
            foreach (var (rows, full) in new[] { (1, 16), (16, 16), (17, 32), (32, 32), (33, 64), (64, 64), (512, 64) })
            {
                // sm_90 (227 KB): the full-size path, the smallest variant that holds the rows, two stages.
                var (path, kernel) = Portable(target, type, rows, Sm90Limit)!.Value;
                Assert.Equal(MmaSyncPath.Registration.Name, path);
                Assert.Equal((full, 2), (kernel.RowsPerCta, kernel.Stages));

                // sm_80 (163 KB): the full-size path's one-stage 64-row kernel, as before.
                (path, kernel) = Portable(target, type, rows, Sm80Limit)!.Value;
                Assert.Equal(MmaSyncPath.Registration.Name, path);
                Assert.Equal((64, 1), (kernel.RowsPerCta, kernel.Stages));

                // sm_86 / sm_89 (99 KB): only the compact path has kernels that fit.
                Assert.Null(MmaSyncPath.Choose(PtxConstants.Descriptors(target, MmaSyncPath.Registration.Module), type, rows, Sm86Limit));
                (path, kernel) = Portable(target, type, rows, Sm86Limit)!.Value;
                Assert.Equal(MmaSyncPath.CompactRegistration.Name, path);
                Assert.Equal(MmaSyncPath.CompactRegistration.Module, kernel.Module);
                Assert.Equal((16, 2, type), (kernel.RowsPerCta, kernel.Stages, kernel.QueryType!.Value));
                Assert.True(kernel.SharedMemoryBytes <= Sm86Limit);
            }

            Assert.Null(Portable(target, type, 16, 78_463));
        }

        Assert.Equal("mla_decode_splitkv_compact_fp16_m16", Portable(target, ElementType.Float16, 20, Sm86Limit)!.Value.Kernel.Entry);
        Assert.Equal(new FlashMla.Cuda.Dim3(8, 2, 5), MmaSyncPath.Grid(Shape(2, 128, 2), 16, numParts: 5)); // 128 rows → 8 CTAs of 16
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
        foreach (var target in new[] { "sm_80", "sm_90a" })
        {
            Assert.Contains(CudaMlaDecoder.DescribePaths(target), p => p.Path == MmaSyncPath.CompactRegistration.Name && p.Module == MmaSyncPath.CompactRegistration.Module && p.IsAvailable);
        }

        Assert.All(CudaMlaDecoder.DescribePaths("sm_99"), p => Assert.False(p.IsAvailable));
    }
}
