using FlashMla.Kernels;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;
using FlashMla.Tensors;
using FlashMla.Tests.Kernels;

namespace FlashMla.Tests.Mla.Cuda;

/// <summary>
/// The wgmma (sm_90a) kernel path's rules and entries, from the embedded PTX (no GPU needed): it is
/// asked first, built for sm_90a only, has one entry per element type and head dimension with the
/// launch facts of decode_sm90.cu, and refuses page sizes its 64-token TMA boxes cannot read.
/// </summary>
public sealed class WgmmaPathTests
{
    private static MlaDecodeShape Shape(int pageBlockSize, int headDim = 576) =>
        new(Batch: 3, QueryLength: 1, QueryHeads: 128, KvHeads: 1, HeadDim: headDim, HeadDimV: 512, NumBlocks: 10, PageBlockSize: pageBlockSize, MaxBlocksPerSequence: 4);

    private static MlaDecodeProblem Problem(MlaDecodeShape shape, ElementType type = ElementType.BFloat16) =>
        new(shape, type, KvCacheFormat.Dense(type, shape.HeadDim), type);

    [Fact]
    public void Path_IsAskedBeforeMmaSync_AndBuiltForSm90aOnly()
    {
        var names = DecodeKernelPaths.All.Select(r => r.Name).ToArray();
        Assert.True(Array.IndexOf(names, WgmmaPath.Registration.Name) < Array.IndexOf(names, MmaSyncPath.Registration.Name), string.Join(", ", names));
        Assert.Equal(["sm_90a"], KernelLibrary.TargetsOf(WgmmaPath.Registration.Module));
        var onSm80 = Assert.Single(CudaMlaDecoder.DescribePaths("sm_80"), p => p.Path == WgmmaPath.Registration.Name);
        Assert.False(onSm80.IsAvailable);
        Assert.Contains("sm_90a", onSm80.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Entries_CoverEachElementTypeAndHeadDim_WithTheKernelsLaunchFacts()
    {
        var descriptors = PtxConstants.Descriptors("sm_90a", WgmmaPath.Registration.Module);
        foreach (var type in ElementTypes.All)
        {
            foreach (var headDim in MlaDecodeValidation.SupportedHeadDims)
            {
                var d = Assert.Single(descriptors, x => x.QueryType == type && x.KvType == type && x.OutputType == type && x.HeadDim == headDim);
                Assert.Equal(512, d.Threads);
                Assert.Equal(64, d.RowsPerCta);
                Assert.Equal(2, d.Stages);
                Assert.Equal("DecodeParamsSm90", d.ParamStruct);

                // Q (9 boxes of 8 KB) and two stages of 9 boxes, plus barriers and the alignment slack, within sm_90's 227 KB.
                Assert.InRange(d.SharedMemoryBytes, 27 * 8192, 232_448);
            }
        }
    }

    [Theory]
    [InlineData(64)]
    [InlineData(128)]
    [InlineData(256)]
    public void PageSizes_ThatAreMultiplesOf64_AreSupported(int pageBlockSize) =>
        Assert.True(WgmmaPath.SupportLayout(Problem(Shape(pageBlockSize))).IsSupported);

    [Theory]
    [InlineData(1)]
    [InlineData(16)]
    [InlineData(32)]
    [InlineData(96)]
    public void OtherPageSizes_AreRefused_NamingKCacheAndTheRule(int pageBlockSize)
    {
        var answer = WgmmaPath.SupportLayout(Problem(Shape(pageBlockSize)));
        Assert.False(answer.IsSupported);
        Assert.Equal("kCache", answer.ParamName);
        Assert.Contains("multiple of 64", answer.Reason, StringComparison.Ordinal);
        Assert.Contains($"it is {pageBlockSize}", answer.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void AStrideBeyondWhatATensorMapAddresses_IsRefused()
    {
        var shape = Shape(64);
        var huge = new TensorLayout([shape.NumBlocks, shape.PageBlockSize, shape.KvHeads, shape.HeadDim], [1L << 40, shape.HeadDim, shape.HeadDim, 1]);
        var answer = WgmmaPath.SupportLayout(new MlaDecodeProblem(shape, ElementType.BFloat16, KvCacheFormat.Dense(ElementType.BFloat16), ElementType.BFloat16, huge));
        Assert.False(answer.IsSupported);
        Assert.Equal("kCache", answer.ParamName);
        Assert.Contains("2^40", answer.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void MixedElementTypes_AreRefusedByTheSharedRule()
    {
        var shape = Shape(64);
        var answer = DecodePathRules.DenseSingleType(
            new MlaDecodeProblem(shape, ElementType.BFloat16, KvCacheFormat.Dense(ElementType.Float16), ElementType.BFloat16),
            WgmmaPath.Registration.Name,
            ElementTypes.All);
        Assert.False(answer.IsSupported);
        Assert.Equal("kCache", answer.ParamName);
        Assert.Contains(WgmmaPath.Registration.Name, answer.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(128, 16, 4096, 8192)]   // 1 tile × 128 × 64
    [InlineData(16, 128, 4096, 2048)]   // 2 tiles × 16 × 64
    [InlineData(1, 16, 1000, 16)]       // capacity 1000 → 16 blocks
    public void Work_CountsTilesTimesCapacityBlocks(int batch, int queryHeads, int capacity, long pairs)
    {
        var shape = new MlaDecodeShape(batch, 1, queryHeads, 1, 576, 512, 1, 8, (capacity + 7) / 8);
        Assert.True(WgmmaPath.SupportWork(shape, pairs).IsSupported);
        var no = WgmmaPath.SupportWork(shape, pairs + 1);
        Assert.False(no.IsSupported);
        Assert.Equal("blockTable", no.ParamName);
        Assert.Contains(pairs.ToString(System.Globalization.CultureInfo.InvariantCulture), no.Reason, StringComparison.Ordinal);
        Assert.True(WgmmaPath.SupportWork(shape, 0).IsSupported);
    }

    [Theory]
    [InlineData(1, 16, 1)]     // 16 rows: the 64-row tile is three-quarters empty
    [InlineData(2, 16, 1)]     // 32 rows
    [InlineData(1, 64, 0)]
    [InlineData(1, 128, 0)]
    [InlineData(2, 128, 0)]
    public void MinBlocks_IsHigherForNarrowTiles(int queryLength, int queryHeads, int perSm)
    {
        var shape = new MlaDecodeShape(4, queryLength, queryHeads, 1, 576, 512, 64, 64, 16);
        Assert.Equal(perSm * 132L, WgmmaPath.MinBlocks(shape, 132));
        Assert.Equal(queryLength * queryHeads <= WgmmaPath.NarrowRows ? WgmmaPath.MinBlocksPerSmNarrow : WgmmaPath.MinBlocksPerSmWide, perSm);
    }

    [Theory]
    [InlineData(1, 1024, 132, 16)]     // 16 blocks: one piece each at most
    [InlineData(1, 32768, 132, 132)]   // one request over every part
    [InlineData(4, 4096, 132, 33)]     // 4 requests share 132 parts
    [InlineData(4, 32768, 66, 16)]
    [InlineData(200, 4096, 132, 0)]    // more requests than parts
    public void ExpectedSplitsPerRequest_IsTheSmallerOfBlocksAndPartsPerRequest(int batch, int capacity, int parts, long expected)
    {
        var shape = new MlaDecodeShape(batch, 1, 16, 1, 576, 512, batch * capacity / 64, 64, capacity / 64);
        Assert.Equal(expected, CudaMlaDecoder.ExpectedSplitsPerRequest(shape, parts));
    }

    [Theory]
    [InlineData(true, false, 1, 32768, 132, true)]    // 132 expected pieces
    [InlineData(true, false, 4, 4096, 132, true)]     // 33
    [InlineData(true, false, 4, 32768, 66, false)]    // 16
    [InlineData(true, false, 128, 4096, 132, false)]  // 1
    [InlineData(false, false, 1, 32768, 132, false)]  // switched off
    [InlineData(true, true, 128, 4096, 132, true)]    // tests: whenever the grid fits
    public void MergesInKernel_FromInKernelMergeMinSplitsExpectedPieces(bool mergeInKernel, bool always, int batch, int capacity, int parts, bool expected)
    {
        var shape = new MlaDecodeShape(batch, 1, 16, 1, 576, 512, batch * capacity / 64, 64, capacity / 64);
        Assert.Equal(expected, CudaMlaDecoder.MergesInKernelFor(mergeInKernel, always, shape, new FlashMla.Cuda.Dim3(1, 1, (uint)parts), parts, 132));
        // A grid larger than the device never merges in the kernel: its CTAs could not all be resident.
        Assert.False(CudaMlaDecoder.MergesInKernelFor(mergeInKernel, always, shape, new FlashMla.Cuda.Dim3(2, 1, (uint)parts), parts, parts));
    }
}
