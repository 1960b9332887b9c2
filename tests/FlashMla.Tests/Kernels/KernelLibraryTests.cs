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

    [Fact]
    public void EntryNames_AndTargets_ComeFromTheEmbeddedPtx()
    {
        Assert.Equal([DeviceFill.KernelName], KernelLibrary.EntryNames(KernelLibrary.ReadPtx("sm_80", DeviceFill.ModuleName)!));
        Assert.Equal(["sm_80", "sm_90a"], KernelLibrary.TargetsOf(DeviceFill.ModuleName));
        Assert.Empty(KernelLibrary.TargetsOf("no_such_module"));
    }
}

/// <summary>The kernel library on a real device (skipped, with the reason, without one).</summary>
[Collection(GpuCollection.Name)]
public sealed class KernelLibraryGpuTests(GpuFixture gpu)
{
    [Fact]
    public void Entries_CarryTheDescriptorsTheModulesDeclare()
    {
        var library = gpu.RequireContext().Kernels;
        foreach (var module in KernelLibrary.AvailableModules(library.Target))
        {
            var constants = PtxConstants.Read(KernelLibrary.ReadPtx(library.Target, module)!);
            var entries = library.GetEntries(module);
            Assert.NotEmpty(entries);
            foreach (var entry in entries)
            {
                var fromPtx = KernelDescriptor.Parse(constants[KernelDescriptor.GlobalPrefix + entry.Descriptor.Entry], module, entry.Descriptor.Entry, library.Target);
                Assert.Equal(fromPtx, entry.Descriptor);
                Assert.Same(entry, library.GetEntry(module, entry.Descriptor.Entry));
            }
        }
    }

    [Fact]
    public void AbsentModule_IsReportedWithAReason()
    {
        var library = gpu.RequireContext().Kernels;
        Assert.False(library.TryGetModule("no_such_module", out var module, out var reason));
        Assert.Null(module);
        Assert.Contains("no_such_module", reason, StringComparison.Ordinal);
        var ex = Assert.Throws<InvalidOperationException>(() => library.GetModule("no_such_module"));
        Assert.Equal(reason, ex.Message);
    }
}
