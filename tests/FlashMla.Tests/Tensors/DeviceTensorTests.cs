using FlashMla.Cuda;
using FlashMla.Tensors;

namespace FlashMla.Tests.Tensors;

/// <summary>Device tensor views on a real device (skipped, with the reason, without one).</summary>
[Collection(GpuCollection.Name)]
public sealed class DeviceTensorTests(GpuFixture gpu)
{
    [Fact]
    public void DeviceTensor_CopiesAndFillsTheMemoryItSpans()
    {
        var context = gpu.RequireContext();
        var stream = gpu.RequireStream();
        var layout = new TensorLayout([3, 4], [6, 1]); // spans 2·6 + 3 + 1 = 16 elements
        var host = Enumerable.Range(0, 16).Select(i => (float)i).ToArray();
        using var buffer = DeviceBuffer<float>.Allocate(context, 20);
        buffer.MemsetD32Async(0, stream);
        var tensor = buffer.AsTensor(layout);
        Assert.Equal(64, tensor.SpanBytes);
        tensor.CopyFromAsync(new HostTensor<float>(host, layout), stream);
        var back = new float[16];
        tensor.CopyTo(back, stream);
        Assert.Equal(host, back);
        Assert.Equal([0f, 0f, 0f, 0f], buffer.ToArray()[16..]);

        tensor.MemsetD32Async(0x3F800000, stream);
        var filled = new HostTensor<float>(new float[16], layout);
        tensor.CopyTo(filled, stream);
        Assert.All(filled.Span.ToArray(), v => Assert.Equal(1.0f, v));
        Assert.Throws<ArgumentException>(() => tensor.CopyFromAsync(new HostTensor<float>(host, TensorLayout.Contiguous(3, 4)), stream));
        Assert.Throws<ArgumentException>(() => tensor.CopyTo(new float[15], stream));
    }
}
