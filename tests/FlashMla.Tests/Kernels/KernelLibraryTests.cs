using FlashMla.Cuda;
using FlashMla.Kernels;

namespace FlashMla.Tests.Kernels;

/// <summary>The kernel library without a GPU: target selection and the embedded PTX.</summary>
public sealed class KernelLibraryTests
{
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
}
