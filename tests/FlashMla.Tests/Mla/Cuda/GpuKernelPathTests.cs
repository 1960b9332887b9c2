using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Mla.Cuda;
using FlashMla.Mla;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cuda;

/// <summary>
/// The CUDA decoder's kernel-path seam and plan lifecycle on a device: which kernel runs, the
/// rejection of what no path supports, the page geometry a plan was updated for, and the loud
/// failure of a kernel launched with too little shared memory.
/// </summary>
[Collection(GpuCollection.Name)]
public sealed class GpuKernelPathTests(GpuFixture gpu)
{
    private static DecodeCase<BFloat16> Case(string name) => DecodeCase<BFloat16>.Create(new DecodeCaseSpec
    {
        Batch = 2,
        QueryLength = 2,
        QueryHeads = 16,
        KvHeads = 2,
        SeqlenK = 100,
        Causal = true,
        PageBlockSize = 16,
        Seed = TestSeeds.Next(name),
    });

    [Fact]
    public void KernelPaths_ListMmaSyncAsAvailable_AndDescribeKernelNamesItsVariant()
    {
        var decoder = gpu.RequireMmaSyncDecoder();
        var mma = Assert.Single(decoder.KernelPaths, p => p.Path == MmaSyncPath.Registration.Name);
        Assert.True(mma.IsAvailable, mma.ToString());
        Assert.Equal(decoder.Context.Kernels.Target, mma.Target);

        var shape = new MlaDecodeShape(4, 1, 128, 1, 576, 512, 100, 64, 8);
        var info = decoder.DescribeKernel(new MlaDecodeProblem(shape, ElementType.BFloat16, KvCacheFormat.Dense(ElementType.BFloat16), ElementType.BFloat16));
        Assert.Equal(MmaSyncPath.Registration.Name, info.Path);
        Assert.Equal(MmaSyncPath.Registration.Module, info.Kernel.Module);
        Assert.Equal(64, info.RowsPerCta);
        Assert.Equal(ElementType.BFloat16, info.Kernel.QueryType);
        Assert.Equal(new Dim3(2, 1, (uint)decoder.NumPartsFor(1, 128, 1)), info.Grid);
        var entry = decoder.Context.Kernels.GetEntry(info.Kernel.Module, info.Entry);
        Assert.True(entry.Kernel.MaxDynamicSharedSizeBytes >= info.SharedMemoryBytes, "the variant's shared-memory limit was raised");
    }

    [Theory]
    [InlineData(64, 576, true)]
    [InlineData(128, 512, true)]
    [InlineData(16, 576, false)]
    [InlineData(1, 576, false)]
    public void OnSm90a_TheWgmmaPathTakesPageSizesThatAreMultiplesOf64_ElsewhereItIsUnavailable(int pageBlockSize, int headDim, bool wgmma)
    {
        var decoder = gpu.RequireWgmmaFirstDecoder();
        var status = Assert.Single(decoder.KernelPaths, p => p.Path == WgmmaPath.Registration.Name);
        var shape = new MlaDecodeShape(4, 2, 64, 1, headDim, 512, 100, pageBlockSize, 8);
        var problem = new MlaDecodeProblem(shape, ElementType.Float16, KvCacheFormat.Dense(ElementType.Float16, headDim), ElementType.Float16);
        var info = decoder.DescribeKernel(problem);
        if (decoder.Context.Kernels.Target != "sm_90a")
        {
            Assert.False(status.IsAvailable, $"{status} on {decoder.Context.Device}");
            Assert.Equal(MmaSyncPath.Registration.Name, info.Path);
            return;
        }

        Assert.True(status.IsAvailable, status.ToString());
        Assert.Equal(wgmma ? WgmmaPath.Registration.Name : MmaSyncPath.Registration.Name, info.Path);
        if (wgmma)
        {
            Assert.Equal(WgmmaPath.Registration.Module, info.Kernel.Module);
            Assert.Equal(headDim, info.Kernel.HeadDim);
            Assert.Equal(512, info.Threads);
            Assert.Equal(ElementType.Float16, info.Kernel.QueryType);
            Assert.Equal(new Dim3(2, 1, (uint)decoder.NumPartsFor(2, 64, 1)), info.Grid);
        }
    }

    [Theory]
    [InlineData(128, 1, 16, 4096, true)]    // 128 requests × 64 blocks: about 62 pairs per SM
    [InlineData(1, 1, 16, 32768, true)]     // 1 tile × 512 blocks = 512 of 132 (16 rows: 1 per SM)
    [InlineData(4, 1, 16, 4096, true)]      // 1 tile × 4 × 64 = 256 of 132
    [InlineData(4, 1, 16, 1024, false)]     // 1 tile × 4 × 16 = 64 of 132
    [InlineData(1, 1, 16, 1024, false)]     // 16 blocks in all
    [InlineData(4, 1, 128, 4096, true)]     // 128 rows: always
    [InlineData(1, 1, 128, 1024, true)]     // 2 tiles × 16 = 32 pairs, still
    public void TheDefaultDecoder_LeavesSmallCallsToMmaSync_OnSm90a(int batch, int queryLength, int queryHeads, int capacity, bool large)
    {
        var decoder = gpu.RequireDecoder();
        var shape = new MlaDecodeShape(batch, queryLength, queryHeads, 1, 576, 512, batch * capacity / 64, 64, capacity / 64);
        var info = decoder.DescribeKernel(new MlaDecodeProblem(shape, ElementType.BFloat16, KvCacheFormat.Dense(ElementType.BFloat16), ElementType.BFloat16));
        var expected = decoder.Context.Kernels.Target == "sm_90a"
            && WgmmaPath.SupportWork(shape, WgmmaPath.MinBlocks(shape, decoder.Context.Device.MultiprocessorCount)).IsSupported
            ? WgmmaPath.Registration.Name
            : MmaSyncPath.Registration.Name;
        Assert.Equal(expected, info.Path);
        if (decoder.Context.Device.MultiprocessorCount == 132 && decoder.Context.Kernels.Target == "sm_90a")
        {
            Assert.Equal(large ? WgmmaPath.Registration.Name : MmaSyncPath.Registration.Name, info.Path);
        }

        // Pinned, the wgmma path takes the small calls too.
        Assert.Equal(
            decoder.Context.Kernels.Target == "sm_90a" ? WgmmaPath.Registration.Name : MmaSyncPath.Registration.Name,
            gpu.RequireWgmmaFirstDecoder().DescribeKernel(new MlaDecodeProblem(shape, ElementType.BFloat16, KvCacheFormat.Dense(ElementType.BFloat16), ElementType.BFloat16)).Path);
    }

    [Fact]
    public void PinningPaths_TakesRegisteredNamesOnly()
    {
        var context = gpu.RequireDecoder().Context;
        Assert.Equal("kernelPaths", Assert.Throws<ArgumentException>(() => new CudaMlaDecoder(context, ["wgmma2"])).ParamName);
        Assert.Equal("kernelPaths", Assert.Throws<ArgumentException>(() => new CudaMlaDecoder(context, Array.Empty<string>())).ParamName);
        using var mma = new CudaMlaDecoder(context, [MmaSyncPath.Registration.Name]);
        Assert.Equal([MmaSyncPath.Registration.Name], mma.KernelPaths.Select(p => p.Path));
    }

    [Fact]
    public void MixedElementTypes_AreRejectedBeforeAnythingRuns_NamingTheParameter()
    {
        var decoder = gpu.RequireDecoder();
        var stream = gpu.RequireStream();
        var decodeCase = Case(nameof(MixedElementTypes_AreRejectedBeforeAnythingRuns_NamingTheParameter));
        var spec = decodeCase.Spec;
        using var device = DeviceCase<BFloat16>.Upload(decoder.Context, decodeCase, stream);
        using var plan = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, spec.PageBlockSize, stream);
        device.Poison(stream);

        using var halfOutput = DeviceBuffer<Half>.Allocate(decoder.Context, device.OutputBuffer.Length);
        var ex = Assert.Throws<ArgumentException>(() => decoder.Decode(
            device.Q, device.K, device.Table, device.Seqlens, plan, halfOutput.AsTensor(device.Output.Layout), device.Lse, stream, decodeCase.Options));
        Assert.Equal("output", ex.ParamName);
        Assert.Contains(MmaSyncPath.Registration.Name, ex.Message, StringComparison.Ordinal);

        var halfCache = new DeviceKvCache<Half>(new DeviceTensor<Half>(device.K.Pointer, device.K.Layout), KvCacheFormat.Dense(ElementType.Float16));
        ex = Assert.Throws<ArgumentException>(() => decoder.Decode(
            device.Q, halfCache, device.Table, device.Seqlens, plan, device.Output, device.Lse, stream, decodeCase.Options));
        Assert.Equal("kCache", ex.ParamName);

        var problem = new MlaDecodeProblem(
            new MlaDecodeShape(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads, 576, 512, decodeCase.NumBlocks, spec.PageBlockSize, decodeCase.MaxBlocksPerSequence),
            ElementType.Float16,
            KvCacheFormat.Dense(ElementType.BFloat16),
            ElementType.Float16);
        Assert.Equal("kCache", Assert.Throws<ArgumentException>(() => decoder.DescribeKernel(problem)).ParamName);

        decoder.Synchronize(stream);
        var (output, lse) = (new BFloat16[device.OutputBuffer.Length], new float[device.LseBuffer.Length]);
        device.OutputBuffer.CopyTo(output, stream);
        device.LseBuffer.CopyTo(lse, stream);
        Assert.All(output, v => Assert.True(TestTensors.IsPoison(v)));
        Assert.All(lse, v => Assert.True(TestTensors.IsPoison(v)));
    }

    [Fact]
    public void Plan_UpdatedForAnotherPageGeometry_OrFromAnotherDecoder_IsRejectedOnPlan()
    {
        var decoder = gpu.RequireDecoder();
        var stream = gpu.RequireStream();
        var decodeCase = Case(nameof(Plan_UpdatedForAnotherPageGeometry_OrFromAnotherDecoder_IsRejectedOnPlan));
        var spec = decodeCase.Spec;
        using var device = DeviceCase<BFloat16>.Upload(decoder.Context, decodeCase, stream);

        // The same capacity, but not the cache's page size.
        using var plan = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence * 2, spec.PageBlockSize / 2, stream);
        Assert.Equal(spec.PageBlockSize / 2, plan.PageBlockSize);
        var ex = Assert.Throws<ArgumentException>(() => device.Decode(decoder, plan, stream, decodeCase.Options));
        Assert.Equal("plan", ex.ParamName);
        Assert.Contains("page_block_size", ex.Message, StringComparison.Ordinal);

        using var other = new CudaMlaDecoder(decoder.Context);
        using var foreign = other.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        Assert.Equal("plan", Assert.Throws<ArgumentException>(() => decoder.UpdatePlan(foreign, device.Seqlens, decodeCase.MaxBlocksPerSequence, spec.PageBlockSize, stream)).ParamName);
        decoder.Synchronize(stream);
    }

    [Fact]
    public void Kernel_LaunchedWithTooLittleSharedMemory_FailsLoudly_ThenThePlanStillWorks()
    {
        var decoder = gpu.RequireDecoder();
        var stream = gpu.RequireStream();
        var decodeCase = Case(nameof(Kernel_LaunchedWithTooLittleSharedMemory_FailsLoudly_ThenThePlanStillWorks));
        var spec = decodeCase.Spec;
        using var device = DeviceCase<BFloat16>.Upload(decoder.Context, decodeCase, stream);
        using var plan = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);

        // The schedule kernel by hand, without the shared memory its descriptor asks for.
        var schedule = decoder.Context.Kernels.GetEntries(DecodeSharedKernels.ScheduleModule).Single();
        var parameters = new ScheduleParams
        {
            CacheSeqlens = device.Seqlens.Pointer,
            Parts = plan.Parts.Pointer,
            NumSplits = plan.NumSplits.Pointer,
            Error = plan.Errors.Pointer,
            Batch = plan.Batch,
            NumParts = plan.NumParts,
            Capacity = decodeCase.MaxBlocksPerSequence * spec.PageBlockSize,
        };
        schedule.Kernel.Launch(new LaunchConfig(1, (uint)schedule.Descriptor.Threads, 0, stream), parameters);
        var ex = Assert.Throws<InvalidOperationException>(() => decoder.Synchronize(stream, plan));
        Assert.Contains($"{schedule.Descriptor.SharedMemoryBytesFor(plan.Batch)} bytes", ex.Message, StringComparison.Ordinal);

        // A parameter struct of another kernel is refused before the launch.
        Assert.Throws<InvalidOperationException>(() => schedule.Launch(new Dim3(1), default(CombineParams), stream));

        // The record was cleared: the plan decodes correctly.
        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, spec.PageBlockSize, stream);
        device.Poison(stream);
        device.Decode(decoder, plan, stream, decodeCase.Options);
        decoder.Synchronize(stream);
        var (output, lse) = device.Read(stream);
        var outputTensor = new HostTensor<BFloat16>(output, TensorLayout.Contiguous(decodeCase.OutputShape));
        var lseTensor = new HostTensor<float>(lse, TensorLayout.Contiguous(decodeCase.LseShape));
        Compare.AssertDecode(decodeCase, outputTensor, lseTensor, Tolerance.Output);
    }
}
