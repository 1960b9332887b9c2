using FlashMla.Cuda;
using FlashMla.Tensors;

namespace FlashMla.Tests.Cuda;

/// <summary>Page-locked host memory and the tensor copies that use it, on a real device (skipped without one).</summary>
[Collection(GpuCollection.Name)]
public sealed class PinnedHostBufferTests(GpuFixture gpu)
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4099)]
    public void Pinned_UploadsAsynchronously_AndTensorsCopyDeviceToDevice(int length)
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        using var pinned = PinnedHostBuffer<int>.Allocate(context, length + 3);
        Assert.Equal(length + 3, pinned.Length);
        Assert.Equal((long)(length + 3) * sizeof(int), pinned.SizeInBytes);
        Assert.NotEqual(0, pinned.Pointer);
        var expected = Enumerable.Range(0, length).Select(i => (i * 7) - 3).ToArray();
        expected.CopyTo(pinned.Span[3..]);
        Assert.Equal(expected, pinned.Memory.Span[3..].ToArray());

        using var a = DeviceBuffer<int>.Allocate(context, Math.Max(length, 1));
        using var b = DeviceBuffer<int>.Allocate(context, Math.Max(length, 1));
        var ta = new DeviceTensor<int>(a.Pointer, TensorLayout.Contiguous(length));
        var tb = new DeviceTensor<int>(b.Pointer, TensorLayout.Contiguous(length));
        b.MemsetAsync(0xff, stream);
        ta.CopyFromAsync(pinned, stream, sourceOffset: 3);
        tb.CopyFromAsync(ta, stream);
        var back = new int[length];
        tb.CopyTo(back, stream);
        Assert.Equal(expected, back);

        Assert.Equal("sourceOffset", Assert.Throws<ArgumentOutOfRangeException>(() => ta.CopyFromAsync(pinned, stream, sourceOffset: 4)).ParamName);
        var other = new DeviceTensor<int>(b.Pointer, TensorLayout.Contiguous(length + 1));
        Assert.Equal("source", Assert.Throws<ArgumentException>(() => other.CopyFromAsync(ta, stream)).ParamName);

        pinned.Dispose();
        Assert.True(pinned.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => pinned.Pointer);
        pinned.Dispose();
    }

    [Fact]
    public void Pinned_UploadInAGraph_ReadsTheHostMemoryAtEachReplay()
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        using var pinned = PinnedHostBuffer<int>.Allocate(context, 256);
        using var device = DeviceBuffer<int>.Allocate(context, 256);
        var tensor = new DeviceTensor<int>(device.Pointer, TensorLayout.Contiguous(256));
        using var graph = CudaGraph.Capture(stream, () => tensor.CopyFromAsync(pinned, stream));
        using var exec = graph.Instantiate();
        for (var replay = 0; replay < 3; replay++)
        {
            pinned.Span.Fill(replay * 11);
            exec.Launch(stream);
            var back = new int[256];
            tensor.CopyTo(back, stream);
            Assert.All(back, v => Assert.Equal(replay * 11, v));
        }
    }

    [Fact]
    public void Pinned_RejectsBadArguments()
    {
        var context = gpu.RequireContext();
        Assert.Throws<ArgumentNullException>(() => PinnedHostBuffer<int>.Allocate(null!, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => PinnedHostBuffer<int>.Allocate(context, -1));
        using var empty = PinnedHostBuffer<int>.Allocate(context, 0);
        Assert.Equal(0, empty.Span.Length);
        Assert.Equal(0, empty.Memory.Length);
    }
}
