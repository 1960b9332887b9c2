using System.Runtime.InteropServices;
using FlashMla.Cuda;
using FlashMla.Cuda.Native;
using FlashMla.Kernels;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;

namespace FlashMla.Tests.Cuda;

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
    public void Load_Failure_IsLoggedAsAWarningWithTheTrace()
    {
        var logger = new CollectingLogger();
        var name = $"/nonexistent/{Guid.NewGuid():N}/libcuda.so.1";

        var ex = Assert.Throws<CudaLibraryLoadException>(() => CudaDriver.LoadUncached(name, logger));

        var entry = Assert.Single(logger.Entries);
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, entry.Level);
        Assert.Equal(101, entry.EventId.Id);
        Assert.Contains(name, entry.Message, StringComparison.Ordinal);
        Assert.Contains(ex.Message, entry.Message, StringComparison.Ordinal);
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
    public void GpuTestMode_Parses()
    {
        Assert.Equal(GpuTestMode.Full, GpuFixture.ParseMode(null));
        Assert.Equal(GpuTestMode.Quick, GpuFixture.ParseMode("quick"));
        Assert.Equal(GpuTestMode.Off, GpuFixture.ParseMode("off"));
        Assert.Equal(GpuTestMode.Full, GpuFixture.ParseMode("full"));
    }
}
