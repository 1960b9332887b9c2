using System.Runtime.InteropServices;
using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Tests.Cuda;

/// <summary>
/// The CUDA driver binding on a real device. Each test skips, with the reason, where no CUDA
/// driver or device is present.
/// </summary>
[Collection(GpuCollection.Name)]
public sealed class CudaBindingTests(GpuFixture gpu)
{
    [Fact]
    public void Device_PropertiesAreSane()
    {
        var context = gpu.RequireContext();
        var device = context.Device;
        var driver = context.Driver;
        Assert.True(driver.Version >= 12000, $"driver CUDA {driver.VersionString}");
        Assert.True(driver.DeviceCount >= 1);
        Assert.False(string.IsNullOrWhiteSpace(device.Name));
        Assert.True(device.ComputeCapability.Major >= 3, device.ComputeCapability.ToString());
        Assert.True(device.MultiprocessorCount > 0);
        Assert.True(device.TotalMemoryBytes > 1L << 30, $"{device.TotalMemoryBytes} bytes");
        Assert.True(device.L2CacheSizeBytes > 0);
        Assert.Equal(32, device.WarpSize);
        Assert.True(device.MaxThreadsPerBlock >= 1024);
        Assert.True(device.MaxSharedMemoryPerBlock >= 48 * 1024);
        Assert.True(device.MaxSharedMemoryPerBlockOptin >= device.MaxSharedMemoryPerBlock);
        Assert.True(device.MaxSharedMemoryPerMultiprocessor >= device.MaxSharedMemoryPerBlockOptin);
        Assert.True(device.MaxGridDimX >= 65535);
        if (device.MemoryBusWidthBits is { } bus)
        {
            Assert.True(bus > 0);
        }

        if (device.ClockRateKHz is { } clock)
        {
            Assert.True(clock > 0);
        }

        var (free, total) = context.GetMemoryInfo();
        Assert.True(free > 0 && free <= total, $"free {free}, total {total}");
        Assert.InRange(total, 1, device.TotalMemoryBytes);
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"{device}: {device.MultiprocessorCount} SMs, {device.TotalMemoryBytes >> 20} MiB, L2 {device.L2CacheSizeBytes >> 10} KiB, smem opt-in {device.MaxSharedMemoryPerBlockOptin} B, driver CUDA {driver.VersionString} ({driver.LibraryName}, cuGetProcAddress: {driver.UsesGetProcAddress})");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(1000)]
    [InlineData(1 << 20)]
    public void Buffer_RoundTrip(int length)
    {
        var context = gpu.RequireContext();
        var data = new int[length];
        new Random(length).NextBytes(MemoryMarshal.AsBytes(data.AsSpan()));
        using var buffer = DeviceBuffer<int>.FromHost(context, data);
        Assert.Equal(length, buffer.Length);
        Assert.Equal(length * 4L, buffer.SizeInBytes);
        Assert.Equal(length == 0, buffer.Pointer == 0);
        Assert.Equal(data, buffer.ToArray());

        if (length > 2)
        {
            var part = new int[length / 2];
            buffer.CopyTo(part, sourceOffset: 1);
            Assert.Equal(data.AsSpan(1, part.Length).ToArray(), part);
            Assert.Throws<ArgumentOutOfRangeException>(() => buffer.CopyTo(new int[length], sourceOffset: 1));
        }
    }

    [Fact]
    public void AsyncCopy_WithEvents_ElapsedIsNonNegative()
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        const int Length = 4 << 20;
        var data = new float[Length];
        for (var i = 0; i < Length; i++)
        {
            data[i] = i * 0.5f;
        }

        using var a = DeviceBuffer<float>.Allocate(context, Length);
        using var b = DeviceBuffer<float>.Allocate(context, Length);
        using var start = CudaEvent.Create(context);
        using var end = CudaEvent.Create(context);
        start.Record(stream);
        a.CopyFromAsync(data, stream);
        b.CopyFromAsync(a, stream);
        end.Record(stream);
        var back = new float[Length];
        b.CopyTo(back, stream);
        end.Synchronize();
        Assert.True(end.IsComplete());
        Assert.True(stream.IsIdle());
        var ms = CudaEvent.ElapsedMilliseconds(start, end);
        Assert.True(ms >= 0, $"elapsed {ms} ms");
        Assert.Equal(data, back);
    }

    [Fact]
    public void Memset_D8AndD32()
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        using var buffer = DeviceBuffer<uint>.Allocate(context, 1001);
        buffer.MemsetD32Async(0xDEADBEEF, stream);
        var back = new uint[1001];
        buffer.CopyTo(back, stream);
        Assert.All(back, v => Assert.Equal(0xDEADBEEFu, v));

        buffer.MemsetAsync(0xAB, stream);
        buffer.CopyTo(back, stream);
        Assert.All(back, v => Assert.Equal(0xABABABABu, v));

        using var odd = DeviceBuffer<byte>.Allocate(context, 7);
        Assert.Throws<InvalidOperationException>(() => odd.MemsetD32Async(1, stream));
    }

    [Fact]
    public void PtxLoad_InvalidPtx_ThrowsWithErrorLog()
    {
        var context = gpu.RequireContext();
        const string Ptx = ".version 8.0\n.target sm_80\n.address_size 64\n.visible .entry broken() { this is not ptx; }\n";
        var ex = Assert.Throws<CudaException>(() => CudaModule.LoadPtx(context, Ptx, "broken"));
        Assert.Equal(CudaResult.InvalidPtx, ex.Result);
        Assert.NotNull(ex.Detail);
        Assert.Contains("JIT error log", ex.Message, StringComparison.Ordinal);
        TestContext.Current.TestOutputHelper?.WriteLine(ex.Message);
    }

    [Fact]
    public void DynamicSharedMemory_AttributeAndLaunch()
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        var target = KernelLibrary.SelectTarget(context.Device.ComputeCapability);
        using var module = CudaModule.LoadPtx(context, KernelLibrary.ReadPtx(target, DeviceFill.ModuleName)!, "fill-smem");
        var kernel = module.GetKernel(DeviceFill.KernelName);
        var optin = context.Device.MaxSharedMemoryPerBlockOptin;
        var bytes = Math.Min(100 * 1024, optin);
        kernel.SetMaxDynamicSharedMemory(bytes);
        Assert.Equal(bytes, kernel.MaxDynamicSharedSizeBytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => kernel.SetMaxDynamicSharedMemory(optin + 1));

        using var buffer = DeviceBuffer<uint>.Allocate(context, 1000);
        var p = new FillParams { Dst = buffer.Pointer, Count = 1000, Value = 42 };
        kernel.Launch(new LaunchConfig(4, 256, bytes, stream), p);
        Assert.All(buffer.ToArray(), v => Assert.Equal(42u, v));

        // More than allowed: the driver rejects the launch and the error names the kernel.
        if (bytes < optin)
        {
            var ex = Assert.Throws<CudaException>(() => kernel.Launch(new LaunchConfig(1, 256, bytes + 1024, stream), p));
            Assert.Contains(DeviceFill.KernelName, ex.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Launch_WrongParameterStructSize_IsRejected()
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        var kernel = context.Kernels.GetKernel(DeviceFill.ModuleName, DeviceFill.KernelName);
        if (kernel.ParameterSizeBytes is null)
        {
            Assert.Skip($"the driver (CUDA {context.Driver.VersionString}) has no cuFuncGetParamInfo (CUDA 12.4+), so parameter sizes cannot be checked.");
        }

        var ex = Assert.Throws<ArgumentException>(() => kernel.Launch(new LaunchConfig(1, 32, 0, stream), 123L));
        Assert.Contains("24", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Launch_WithClusterAndProgrammaticSerialization()
    {
        gpu.RequireComputeCapability(9, 0, "thread-block clusters and programmatic dependent launch");
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        var kernel = context.Kernels.GetKernel(DeviceFill.ModuleName, DeviceFill.KernelName);
        using var clustered = DeviceBuffer<uint>.Allocate(context, 10_000);
        using var dependent = DeviceBuffer<uint>.Allocate(context, 5_000);
        kernel.Launch(
            new LaunchConfig(8, 256, 0, stream) { ClusterDim = new Dim3(2) },
            new FillParams { Dst = clustered.Pointer, Count = 10_000, Value = 5 });

        // The dependent launch may overlap the previous kernel (it does not wait for it), so it
        // writes other memory.
        kernel.Launch(
            new LaunchConfig(8, 256, 0, stream) { ProgrammaticStreamSerialization = true },
            new FillParams { Dst = dependent.Pointer, Count = 5_000, Value = 6 });
        Assert.True(clustered.ToArray().AsSpan().IndexOfAnyExcept(5u) < 0);
        Assert.True(dependent.ToArray().AsSpan().IndexOfAnyExcept(6u) < 0);
    }

    [Fact]
    public void TensorMap_Encode2DBf16()
    {
        gpu.RequireComputeCapability(9, 0, "TMA tensor maps");
        var context = gpu.RequireContext();
        Assert.True(context.Driver.SupportsTensorMaps);
        using var buffer = DeviceBuffer<BFloat16>.Allocate(context, 256 * 576);
        var map = TensorMap.EncodeTiled2D(context, TensorMapDataType.BFloat16, 2, buffer.Pointer, rows: 256, columns: 576, rowStrideElements: 576, boxRows: 64, boxColumns: 64, TensorMapSwizzle.Swizzle128B);
        Assert.True(map.IsEncoded);
        var again = TensorMap.EncodeTiled2D(context, TensorMapDataType.BFloat16, 2, buffer.Pointer, 256, 576, 576, 64, 64, TensorMapSwizzle.Swizzle128B);
        Assert.Equal(map, again);

        // A stride that is not a multiple of 16 bytes is rejected by the driver.
        Assert.Throws<CudaException>(() => TensorMap.EncodeTiled2D(context, TensorMapDataType.BFloat16, 2, buffer.Pointer, 256, 575, 575, 64, 64));
    }

    [Fact]
    public void Graph_CaptureFillAndReplay()
    {
        var context = gpu.RequireContext();
        using var stream = CudaStream.Create(context, nonBlocking: true);
        using var buffer = DeviceBuffer<uint>.Allocate(context, 100_000);
        buffer.MemsetD32Async(0, stream);
        stream.Synchronize();

        // Load the module outside the capture (module loading is not a stream operation).
        DeviceFill.FillU32(context, buffer.Pointer, 1, 0, stream);
        stream.Synchronize();

        using var graph = CudaGraph.Capture(stream, () =>
        {
            Assert.True(stream.IsCapturing());
            DeviceFill.FillU32(context, buffer.Pointer, 50_000, 0xAAAA5555, stream);
            DeviceFill.FillU32(context, buffer.Pointer + 200_000, 50_000, 0x5555AAAA, stream);
        });
        Assert.False(stream.IsCapturing());

        // Nothing ran during the capture.
        var back = new uint[100_000];
        buffer.CopyTo(back, stream);
        Assert.True(back.AsSpan().IndexOfAnyExcept(0u) < 0, "the capture executed work");

        using var exec = graph.Instantiate();
        for (var replay = 0; replay < 3; replay++)
        {
            buffer.MemsetD32Async(0, stream);
            exec.Launch(stream);
            buffer.CopyTo(back, stream);
            Assert.True(back.AsSpan(0, 50_000).IndexOfAnyExcept(0xAAAA5555u) < 0, $"replay {replay}: first half");
            Assert.True(back.AsSpan(50_000).IndexOfAnyExcept(0x5555AAAAu) < 0, $"replay {replay}: second half");
        }
    }

    [Fact]
    public void Graph_FailedCaptureBody_LeavesStreamUsable()
    {
        var context = gpu.RequireContext();
        using var stream = CudaStream.Create(context, nonBlocking: true);
        Assert.Throws<InvalidOperationException>(() => CudaGraph.Capture(stream, () => throw new InvalidOperationException("body failed")));
        Assert.False(stream.IsCapturing());
        using var buffer = DeviceBuffer<uint>.Allocate(context, 10);
        DeviceFill.FillU32(context, buffer.Pointer, 10, 9, stream);
        stream.Synchronize();
        Assert.All(buffer.ToArray(), v => Assert.Equal(9u, v));
    }

    [Fact]
    public void Dispose_TwiceIsSafe_AndResourcesMayOutliveTheirContextObject()
    {
        var shared = gpu.RequireContext();

        // A second reference to the same primary context, disposed before its resources.
        var context = new CudaContext(shared.Device);
        Assert.Equal(shared.Handle, context.Handle);
        var buffer = DeviceBuffer<float>.Allocate(context, 1024);
        var stream = CudaStream.Create(context);
        var evt = CudaEvent.Create(context);
        var module = CudaModule.LoadPtx(context, KernelLibrary.ReadPtx(KernelLibrary.SelectTarget(context.Device.ComputeCapability), DeviceFill.ModuleName)!, "fill-dispose");
        var graph = CudaGraph.Capture(stream, () => buffer.MemsetD32Async(1, stream));
        var exec = graph.Instantiate();
        _ = context.Kernels.GetModule(DeviceFill.ModuleName);

        context.Dispose();
        context.Dispose();
        Assert.True(context.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => DeviceBuffer<float>.Allocate(context, 1));
        Assert.Throws<ObjectDisposedException>(() => context.Kernels);

        // The resources still work: they hold the primary context.
        exec.Launch(stream);
        buffer.MemsetD32Async(0x3F800000, stream);
        stream.Synchronize();
        Assert.All(buffer.ToArray(), v => Assert.Equal(1.0f, v));

        foreach (var resource in new IDisposable[] { exec, graph, module, evt, stream, buffer })
        {
            resource.Dispose();
            resource.Dispose();
        }

        Assert.True(buffer.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => buffer.Pointer);
        Assert.Throws<ObjectDisposedException>(() => stream.Handle);

        // The shared context is unaffected.
        using var check = DeviceBuffer<int>.FromHost(shared, [1, 2, 3]);
        Assert.Equal([1, 2, 3], check.ToArray());
    }

    [Fact]
    public void Finalizer_FreesLeakedBuffers()
    {
        var context = gpu.RequireContext();
        var (freeBefore, _) = context.GetMemoryInfo();
        LeakBuffers(context);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        context.Synchronize();
        var (freeAfter, _) = context.GetMemoryInfo();

        // 8 × 64 MiB were leaked; allow for other allocations' noise.
        Assert.True(freeAfter > freeBefore - (128L << 20), $"free before {freeBefore >> 20} MiB, after {freeAfter >> 20} MiB");
    }

    private static void LeakBuffers(CudaContext context)
    {
        for (var i = 0; i < 8; i++)
        {
            _ = DeviceBuffer<byte>.Allocate(context, 64L << 20);
        }
    }
}
