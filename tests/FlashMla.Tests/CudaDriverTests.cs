using System.Runtime.InteropServices;
using FlashMla.Cuda;
using FlashMla.Cuda.Native;
using FlashMla.Mla;

namespace FlashMla.Tests;

/// <summary>
/// Binding tests that need no GPU: library load failures, the kernel ABI structs' layouts, PTX
/// target selection. They run everywhere.
/// </summary>
[Collection(GpuCollection.Name)]
public sealed class CudaDriverTests
{
    [Fact]
    public void Load_FromNonexistentOverride_ThrowsWithTrace()
    {
        var ex = Assert.Throws<CudaLibraryLoadException>(() => CudaDriver.LoadUncached("/nonexistent/libcuda.so.1"));
        var attempt = Assert.Single(ex.Attempts);
        Assert.Equal("/nonexistent/libcuda.so.1", attempt.Name);
        Assert.False(string.IsNullOrWhiteSpace(attempt.Reason));
        Assert.Contains("/nonexistent/libcuda.so.1", ex.Message, StringComparison.Ordinal);
        Assert.Contains(CudaDriver.LibraryEnvironmentVariable, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_WithEnvironmentVariable_UsesOnlyThatName()
    {
        // The collection is not parallelized, so changing the variable races with no other test;
        // the process-wide cached driver (CudaDriver.Load) is not involved.
        var previous = Environment.GetEnvironmentVariable(CudaDriver.LibraryEnvironmentVariable);
        Environment.SetEnvironmentVariable(CudaDriver.LibraryEnvironmentVariable, "/nonexistent");
        try
        {
            var ex = Assert.Throws<CudaLibraryLoadException>(
                () => CudaDriver.LoadUncached(Environment.GetEnvironmentVariable(CudaDriver.LibraryEnvironmentVariable)));
            var attempt = Assert.Single(ex.Attempts);
            Assert.Equal("/nonexistent", attempt.Name);
            Assert.Contains("/nonexistent", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            Environment.SetEnvironmentVariable(CudaDriver.LibraryEnvironmentVariable, previous);
        }
    }

    [Fact]
    public void CandidateNames_DefaultAndOverride()
    {
        var defaults = CudaDriver.CandidateNames(null);
        if (OperatingSystem.IsWindows())
        {
            Assert.Equal(["nvcuda.dll"], defaults);
        }
        else
        {
            Assert.Equal(["libcuda.so.1", "libcuda.so"], defaults);
        }

        Assert.Equal(["/opt/x/libcuda.so.1"], CudaDriver.CandidateNames(" /opt/x/libcuda.so.1 "));
        Assert.Equal(defaults, CudaDriver.CandidateNames("  "));
    }

    [Fact]
    public void TryLoad_AgreesWithLoad()
    {
        if (CudaDriver.TryLoad(out var driver, out var reason))
        {
            Assert.Same(driver, CudaDriver.Load());
            Assert.Empty(reason);
            Assert.True(driver.Version >= 12000, $"driver CUDA {driver.VersionString}");
        }
        else
        {
            Assert.Null(driver);
            Assert.False(string.IsNullOrWhiteSpace(reason));
            var ex = Assert.ThrowsAny<Exception>(() => CudaDriver.Load());
            Assert.True(ex is CudaLibraryLoadException or CudaException, ex.GetType().Name);
            Assert.Equal(reason, ex.Message);
        }
    }

    [Fact]
    public void CudaException_CarriesCodeNameMessageAndCall()
    {
        var ex = new CudaException(CudaResult.OutOfMemory, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory", "cuMemAlloc_v2(1 bytes)", "detail text");
        Assert.Equal(CudaResult.OutOfMemory, ex.Result);
        Assert.Equal(2, ex.ResultCode);
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", ex.ErrorName);
        Assert.Equal("out of memory", ex.ErrorString);
        Assert.Equal("cuMemAlloc_v2(1 bytes)", ex.Call);
        Assert.Contains("cuMemAlloc_v2(1 bytes) failed: CUDA_ERROR_OUT_OF_MEMORY (2): out of memory", ex.Message, StringComparison.Ordinal);
        Assert.Contains("detail text", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(9, 0, "sm_90a")]
    [InlineData(8, 0, "sm_80")]
    [InlineData(8, 6, "sm_80")]
    [InlineData(8, 9, "sm_80")]
    [InlineData(10, 0, "sm_80")]
    [InlineData(12, 0, "sm_80")]
    public void SelectTarget_PicksPtxTarget(int major, int minor, string expected) =>
        Assert.Equal(expected, KernelLibrary.SelectTarget(new CudaComputeCapability(major, minor)));

    [Theory]
    [InlineData(7, 5)]
    [InlineData(6, 1)]
    public void SelectTarget_BelowAmpere_IsNotSupported(int major, int minor)
    {
        var ex = Assert.Throws<NotSupportedException>(() => KernelLibrary.SelectTarget(new CudaComputeCapability(major, minor)));
        Assert.Contains($"{major}.{minor}", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("sm_80")]
    [InlineData("sm_90a")]
    public void FillPtx_IsEmbedded(string target)
    {
        Assert.Contains(DeviceFill.ModuleName, KernelLibrary.AvailableModules(target));
        var ptx = KernelLibrary.ReadPtx(target, DeviceFill.ModuleName);
        Assert.NotNull(ptx);
        Assert.Contains(DeviceFill.KernelName, ptx, StringComparison.Ordinal);
        Assert.Contains($".target {target}", ptx, StringComparison.Ordinal);
        Assert.Null(KernelLibrary.ReadPtx(target, "no_such_module"));
    }

    [Fact]
    public void NativeStructs_MatchTheCLayouts()
    {
        // CUlaunchConfig: 7 × uint, hStream at 32, attrs at 40, numAttrs at 48; size 56.
        Assert.Equal(56, Marshal.SizeOf<CuLaunchConfig>());
        Assert.Equal(32, Marshal.OffsetOf<CuLaunchConfig>(nameof(CuLaunchConfig.Stream)).ToInt32());
        Assert.Equal(40, Marshal.OffsetOf<CuLaunchConfig>(nameof(CuLaunchConfig.Attrs)).ToInt32());
        Assert.Equal(48, Marshal.OffsetOf<CuLaunchConfig>(nameof(CuLaunchConfig.NumAttrs)).ToInt32());

        // CUlaunchAttribute: id, 4 bytes of padding, 64-byte value union.
        Assert.Equal(72, Marshal.SizeOf<CuLaunchAttribute>());
        Assert.Equal(8, Marshal.OffsetOf<CuLaunchAttribute>(nameof(CuLaunchAttribute.Value0)).ToInt32());
        Assert.Equal(4, CuLaunchAttribute.ClusterDimension);
        Assert.Equal(6, CuLaunchAttribute.ProgrammaticStreamSerialization);

        Assert.Equal(128, Marshal.SizeOf<TensorMap>());
        Assert.Equal(128, TensorMap.SizeInBytes);
    }

    [Fact]
    public void KernelParams_MatchArchitectureDoc()
    {
        Assert.Equal(24, Marshal.SizeOf<DeviceFill.FillParams>());
        Assert.Equal(16, Marshal.OffsetOf<DeviceFill.FillParams>(nameof(DeviceFill.FillParams.Value)).ToInt32());

        // ScheduleParams: 4 pointers, 4 ints.
        Assert.Equal(48, Marshal.SizeOf<ScheduleParams>());
        Assert.Equal(32, Marshal.OffsetOf<ScheduleParams>(nameof(ScheduleParams.Batch)).ToInt32());
        Assert.Equal(40, Marshal.OffsetOf<ScheduleParams>(nameof(ScheduleParams.Capacity)).ToInt32());

        // DecodeParams: 11 pointers (88 B), 12 strides (96 B), 14 × 32-bit (56 B).
        Assert.Equal(240, Marshal.SizeOf<DecodeParams>());
        Assert.Equal(48, Marshal.OffsetOf<DecodeParams>(nameof(DecodeParams.OAccum)).ToInt32());
        Assert.Equal(80, Marshal.OffsetOf<DecodeParams>(nameof(DecodeParams.Error)).ToInt32());
        Assert.Equal(88, Marshal.OffsetOf<DecodeParams>(nameof(DecodeParams.QBatchStride)).ToInt32());
        Assert.Equal(136, Marshal.OffsetOf<DecodeParams>(nameof(DecodeParams.BtBatchStride)).ToInt32());
        Assert.Equal(176, Marshal.OffsetOf<DecodeParams>(nameof(DecodeParams.LseHeadStride)).ToInt32());
        Assert.Equal(184, Marshal.OffsetOf<DecodeParams>(nameof(DecodeParams.Batch)).ToInt32());
        Assert.Equal(208, Marshal.OffsetOf<DecodeParams>(nameof(DecodeParams.HeadDim)).ToInt32());
        Assert.Equal(228, Marshal.OffsetOf<DecodeParams>(nameof(DecodeParams.NumParts)).ToInt32());
        Assert.Equal(232, Marshal.OffsetOf<DecodeParams>(nameof(DecodeParams.ScaleLog2)).ToInt32());

        // CombineParams: 5 pointers, 5 strides, 8 ints (…, rows, num_parts, pad).
        Assert.Equal(112, Marshal.SizeOf<CombineParams>());
        Assert.Equal(40, Marshal.OffsetOf<CombineParams>(nameof(CombineParams.OBatchStride)).ToInt32());
        Assert.Equal(80, Marshal.OffsetOf<CombineParams>(nameof(CombineParams.Batch)).ToInt32());
        Assert.Equal(104, Marshal.OffsetOf<CombineParams>(nameof(CombineParams.NumParts)).ToInt32());
    }

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

    [Fact]
    public void GpuTestMode_Parses()
    {
        Assert.Equal(GpuTestMode.Full, GpuFixture.ParseMode(null));
        Assert.Equal(GpuTestMode.Quick, GpuFixture.ParseMode("quick"));
        Assert.Equal(GpuTestMode.Off, GpuFixture.ParseMode("off"));
        Assert.Equal(GpuTestMode.Full, GpuFixture.ParseMode("full"));
    }
}
