using FlashMla.Kernels;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cuda;

/// <summary>
/// The decoder of a device with 99 KB of shared memory per block (sm_86, sm_89), built on the
/// device at hand with that limit: the full-size kernel paths are unavailable, every call runs on
/// the compact mma.sync path, and it passes the reference grid (page sizes 1, 16, 64, causal,
/// h_kv > 1, d = 512, zero lengths, several 16-row CTAs per KV head, split requests) and the
/// guarded inputs. <c>FLASHMLA_GPU_TESTS=quick</c> runs half of the grid.
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
[Collection(GpuCollection.Name)]
public abstract class GpuCompactPathTests<T>(GpuFixture gpu)
    where T : unmanaged
{
    /// <summary>b, s_q, s_k, h_q, h_kv, varlen, causal, page size, zero-length requests.</summary>
    private static readonly (int Batch, int QueryLength, int SeqlenK, int QueryHeads, int KvHeads, bool Varlen, bool Causal, int Page, int Empty)[] Cases =
    [
        (2, 1, 300, 16, 1, false, false, 64, 0),     // one 16-row CTA per KV head
        (3, 2, 1000, 32, 2, true, true, 16, 1),      // MTP, h_kv 2, causal
        (2, 4, 140, 128, 8, true, true, 1, 0),       // page 1, 64 rows per KV head: four CTAs
        (1, 2, 777, 128, 1, true, false, 64, 0),     // 256 rows per KV head: sixteen CTAs, split
        (5, 3, 37, 9, 1, true, true, 16, 2),         // short causal requests: rows that see no key
        (4, 1, 2000, 64, 4, true, false, 1, 1),      // page 1, long requests, h_kv 4
    ];

    public static IEnumerable<TheoryDataRow<int>> CaseIndices =>
        Enumerable.Range(0, Cases.Length).Where(i => !GpuFixture.Quick || i % 2 == 0).Select(i => new TheoryDataRow<int>(i));

    [Fact]
    public void KernelInfo_NamesTheCompactKernel_AndTheFullSizePathSaysWhyItCannotRun()
    {
        var decoder = gpu.RequireCompactDecoder();
        var type = ElementTypes.Of<T>(nameof(T));
        var full = Assert.Single(decoder.KernelPaths, p => p.Path == MmaSyncPath.Registration.Name);
        Assert.False(full.IsAvailable, full.ToString());
        Assert.Contains("shared memory", full.Reason, StringComparison.Ordinal);
        var compact = Assert.Single(decoder.KernelPaths, p => p.Path == MmaSyncPath.CompactRegistration.Name);
        Assert.True(compact.IsAvailable, compact.ToString());

        var shape = new MlaDecodeShape(4, 2, 128, 2, 576, 512, 100, 16, 8);
        var info = decoder.DescribeKernel(new MlaDecodeProblem(shape, type, KvCacheFormat.Dense(type), type));
        Assert.Equal(MmaSyncPath.CompactRegistration.Name, info.Path);
        Assert.Equal(MmaSyncPath.CompactRegistration.Module, info.Kernel.Module);
        Assert.Equal($"mla_decode_splitkv_compact_{type.ShortName()}_m16", info.Entry);
        Assert.Equal((16, 256, 2), (info.RowsPerCta, info.Threads, info.Stages));
        Assert.True(info.SharedMemoryBytes <= GpuFixture.Sm86SharedMemoryLimit, $"{info.SharedMemoryBytes} bytes");
        Assert.Equal(new FlashMla.Cuda.Dim3(8, 2, (uint)decoder.NumPartsFor(2, 128, 2)), info.Grid);
        var entry = decoder.Context.Kernels.GetEntry(info.Kernel.Module, info.Entry);
        Assert.True(entry.Kernel.MaxDynamicSharedSizeBytes >= info.SharedMemoryBytes, "the variant's shared-memory limit was raised");
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void Grid_MatchesReference(int index)
    {
        var decoder = gpu.RequireCompactDecoder();
        var c = Cases[index];
        var spec = new DecodeCaseSpec
        {
            Batch = c.Batch,
            QueryLength = c.QueryLength,
            SeqlenK = c.SeqlenK,
            QueryHeads = c.QueryHeads,
            KvHeads = c.KvHeads,
            Varlen = c.Varlen,
            Causal = c.Causal,
            PageBlockSize = c.Page,
            ZeroLengthRequests = c.Empty,
            ExtraTableColumns = 1,
            ExtraPoolBlocks = 3,
            Seed = TestSeeds.Next($"GpuCompact/{index}/{TestTensors.DTypeName<T>()}"),
        };
        AssertRunsCompact(decoder, spec);
        GpuDecodeTests<T>.RunHostAndCheck(decoder, spec);
    }

    [Fact]
    public void HeadDim512_MatchesReference()
    {
        var decoder = gpu.RequireCompactDecoder();
        var spec = new DecodeCaseSpec
        {
            Batch = 3,
            QueryLength = 2,
            QueryHeads = 32,
            KvHeads = 2,
            HeadDim = 512,
            SeqlenK = 500,
            Varlen = true,
            ZeroLengthRequests = 1,
            Causal = true,
            PageBlockSize = 16,
            Seed = TestSeeds.Next($"GpuCompact/d512/{TestTensors.DTypeName<T>()}"),
        };
        AssertRunsCompact(decoder, spec);
        GpuDecodeTests<T>.RunHostAndCheck(decoder, spec);
    }

    [Fact]
    public void AllSequencesEmpty_GiveZeroOutputAndInfiniteLse()
    {
        var decoder = gpu.RequireCompactDecoder();
        var (_, output, lse) = GpuDecodeTests<T>.RunHostAndCheck(decoder, new DecodeCaseSpec
        {
            Batch = 3,
            QueryLength = 2,
            QueryHeads = 16,
            KvHeads = 2,
            Lengths = [0, 0, 0],
            Causal = true,
            PageBlockSize = 16,
            Seed = TestSeeds.Next($"GpuCompact/empty/{TestTensors.DTypeName<T>()}"),
        });
        Assert.All(TestTensors.ToDoubleArray(output), v => Assert.Equal(0.0, v));
        Assert.All(TestTensors.ToDoubleArray(lse), v => Assert.Equal(double.PositiveInfinity, v));
    }

    [Fact]
    public void GuardedInputs_BadBlockId_RaisesNamingTheRequest_ThenContextStillWorks() =>
        GpuDecodeTests<T>.ExpectBadBlockIdReported(gpu.RequireCompactDecoder(), gpu.RequireStream(), $"GpuCompact/bad-block/{TestTensors.DTypeName<T>()}");

    [Fact]
    public void GuardedInputs_TooLongSeqlen_RaisesNamingTheRequest_ThenContextStillWorks() =>
        GpuDecodeTests<T>.ExpectTooLongSeqlenReported(gpu.RequireCompactDecoder(), gpu.RequireStream(), $"GpuCompact/long-seqlen/{TestTensors.DTypeName<T>()}");

    private static void AssertRunsCompact(CudaMlaDecoder decoder, DecodeCaseSpec spec)
    {
        var type = ElementTypes.Of<T>(nameof(T));
        var shape = new MlaDecodeShape(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads, spec.HeadDim, 512, 1, spec.PageBlockSize, 1);
        var info = decoder.DescribeKernel(new MlaDecodeProblem(shape, type, KvCacheFormat.Dense(type, spec.HeadDim), type));
        Assert.Equal(MmaSyncPath.CompactRegistration.Name, info.Path);
    }
}

[Collection(GpuCollection.Name)]
public sealed class GpuCompactPathTests_BFloat16(GpuFixture gpu) : GpuCompactPathTests<BFloat16>(gpu);

[Collection(GpuCollection.Name)]
public sealed class GpuCompactPathTests_Half(GpuFixture gpu) : GpuCompactPathTests<Half>(gpu);
