using System.Runtime.InteropServices;
using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Tests.Kernels;

/// <summary>
/// The library's fill kernel through the kernel library on a real device (skipped, with the
/// reason, without one).
/// </summary>
[Collection(GpuCollection.Name)]
public sealed class DeviceFillTests(GpuFixture gpu)
{
    [Fact]
    public void PtxLoad_FillKernel_ReportsJitLogAndAttributes()
    {
        var context = gpu.RequireContext();
        var target = KernelLibrary.SelectTarget(context.Device.ComputeCapability);
        var ptx = KernelLibrary.ReadPtx(target, DeviceFill.ModuleName);
        Assert.NotNull(ptx);

        // A unique comment defeats the driver's JIT cache, so the compiler runs and logs.
        using var module = CudaModule.LoadPtx(context, ptx + $"\n// nonce {Guid.NewGuid():N}\n", "fill-nonce");
        Assert.False(string.IsNullOrWhiteSpace(module.JitInfoLog), "the JIT info log is empty");
        TestContext.Current.TestOutputHelper?.WriteLine($"JIT info log of fill ({target}):\n{module.JitInfoLog}");
        var kernel = module.GetKernel(DeviceFill.KernelName);
        Assert.Same(kernel, module.GetKernel(DeviceFill.KernelName));
        Assert.True(kernel.NumRegisters > 0);
        Assert.Equal(0, kernel.LocalSizeBytes);
        var descriptor = context.Kernels.GetEntry(DeviceFill.ModuleName, DeviceFill.KernelName).Descriptor;
        Assert.True(kernel.MaxThreadsPerBlock >= descriptor.Threads);
        if (kernel.ParameterSizeBytes is { } size)
        {
            Assert.Equal(descriptor.ParamBytes, size);
        }

        var ex = Assert.Throws<CudaException>(() => module.GetKernel("no_such_kernel"));
        Assert.Equal(CudaResult.NotFound, ex.Result);
        Assert.Equal("CUDA_ERROR_NOT_FOUND", ex.ErrorName);
    }


    [Theory]
    [InlineData(1)]
    [InlineData(255)]
    [InlineData(256)]
    [InlineData(257)]
    [InlineData(1000)]
    [InlineData(65537)]
    [InlineData((65535 * 256) + 1003)] // more words than one thread each: the grid-stride loop
    public void FillKernel_WritesPatternEverywhere(int count)
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        const int Guard = 37;
        using var buffer = DeviceBuffer<uint>.Allocate(context, count + (2 * Guard));
        buffer.MemsetD32Async(0x11111111, stream);
        var pattern = 0xC0FFEE00u + (uint)(count & 0xFF);
        DeviceFill.FillU32(context, buffer.Pointer + (Guard * 4), count, pattern, stream);
        var back = new uint[buffer.Length];
        buffer.CopyTo(back, stream);
        for (var i = 0; i < back.Length; i++)
        {
            var expected = i >= Guard && i < Guard + count ? pattern : 0x11111111u;
            if (back[i] != expected)
            {
                Assert.Fail($"word {i} of {back.Length} is 0x{back[i]:x8}, expected 0x{expected:x8} (count {count})");
            }
        }
    }

    [Fact]
    public void FillKernel_RandomLengths()
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        var rng = new Random(1234);
        var rounds = GpuFixture.Quick ? 3 : 12;
        for (var round = 0; round < rounds; round++)
        {
            var count = rng.Next(1, 300_000);
            using var buffer = DeviceBuffer<uint>.Allocate(context, count + 1);
            buffer.MemsetD32Async(7, stream);
            var pattern = (uint)rng.Next();
            DeviceFill.FillU32(context, buffer.Pointer, count, pattern, stream);
            var back = buffer.ToArray();
            Assert.True(back.AsSpan(0, count).IndexOfAnyExcept(pattern) < 0, $"count {count}: a word is not the pattern");
            Assert.Equal(7u, back[count]);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(513)]
    public void Poison_TwoByteElements_CoversOddLengthsAndOffsets(int length)
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        using var buffer = DeviceBuffer<BFloat16>.Allocate(context, length + 2);
        buffer.MemsetAsync(0, stream);

        // A view that starts 2 bytes into the buffer: its first element is not 4-byte aligned.
        var view = new DeviceTensor<BFloat16>(buffer.Pointer + 2, TensorLayout.Contiguous(length));
        DeviceFill.PoisonWithNaN(context, view, stream);
        var raw = MemoryMarshal.Cast<BFloat16, ushort>(buffer.ToArray().AsSpan()).ToArray();
        Assert.Equal((ushort)0, raw[0]);
        Assert.Equal((ushort)0, raw[length + 1]);
        for (var i = 1; i <= length; i++)
        {
            Assert.Equal((ushort)0x7FC0, raw[i]);
        }

        using var halves = DeviceBuffer<Half>.Allocate(context, length);
        DeviceFill.PoisonWithNaN(halves, stream);
        Assert.All(halves.ToArray(), h => Assert.Equal((ushort)0x7E00, BitConverter.HalfToUInt16Bits(h)));

        using var floats = DeviceBuffer<float>.Allocate(context, length);
        DeviceFill.PoisonWithNaN(floats, stream);
        Assert.All(floats.ToArray(), f => Assert.Equal(0x7FC00000u, BitConverter.SingleToUInt32Bits(f)));
    }

    [Fact]
    public void MemsetFallback_FillsLikeTheKernel()
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        using var buffer = DeviceBuffer<uint>.Allocate(context, 777);
        DeviceFill.FillU32(context, buffer.Pointer, 777, 0x12345678, stream, useMemset: true);
        Assert.All(buffer.ToArray(), v => Assert.Equal(0x12345678u, v));
    }
}
