using FlashMla.Numerics;
using FlashMla.Tensors;

namespace FlashMla.Tests.Tensors;

public class TensorLayoutTests
{
    [Fact]
    public void Contiguous_IsRowMajor()
    {
        var layout = TensorLayout.Contiguous(2, 1, 128, 576);
        Assert.Equal(4, layout.Rank);
        Assert.Equal([2L, 1, 128, 576], layout.Shape.ToArray());
        Assert.Equal([73728L, 73728, 576, 1], layout.Strides.ToArray());
        Assert.Equal(2L * 128 * 576, layout.ElementCount);
        Assert.Equal(layout.ElementCount, layout.RequiredLength);
        Assert.True(layout.IsContiguous);
        Assert.Equal("[2, 1, 128, 576] strides [73728, 73728, 576, 1]", layout.ToString());
    }

    [Fact]
    public void Strided_RequiredLengthIsOnePastTheLargestOffset()
    {
        var layout = new TensorLayout([3, 4], [10, 2]);
        Assert.Equal(12, layout.ElementCount);
        Assert.Equal(1 + (2 * 10) + (3 * 2), layout.RequiredLength);
        Assert.False(layout.IsContiguous);
        Assert.Equal(27L, layout.OffsetOf(2, 3) + 1);
    }

    [Fact]
    public void IsContiguous_IgnoresStridesOfSizeOneDimensions()
    {
        Assert.True(new TensorLayout([4, 1, 8], [8, 12345, 1]).IsContiguous);
        Assert.False(new TensorLayout([4, 2, 8], [16, 9, 1]).IsContiguous);
        Assert.True(new TensorLayout([0, 5], [0, 0]).IsContiguous);
    }

    [Fact]
    public void EmptyAndScalarLayouts()
    {
        var empty = TensorLayout.Contiguous(3, 0, 5);
        Assert.Equal(0, empty.ElementCount);
        Assert.Equal(0, empty.RequiredLength);
        var scalar = TensorLayout.Contiguous();
        Assert.Equal(0, scalar.Rank);
        Assert.Equal(1, scalar.ElementCount);
        Assert.Equal(1, scalar.RequiredLength);
        Assert.Equal("[] strides []", scalar.ToString());
    }

    [Fact]
    public void BroadcastStrideZero_IsAllowed()
    {
        var layout = new TensorLayout([4, 3], [0, 1]);
        Assert.Equal(3, layout.RequiredLength);
        Assert.False(layout.IsContiguous);
    }

    [Fact]
    public void InvalidLayouts_Throw()
    {
        Assert.Throws<ArgumentException>(() => new TensorLayout([2, 3], [3]));
        Assert.Throws<ArgumentException>(() => new TensorLayout([-1, 3], [3, 1]));
        Assert.Throws<ArgumentException>(() => new TensorLayout([2, 3], [-3, 1]));
        Assert.Throws<ArgumentException>(() => new TensorLayout([long.MaxValue / 2, 4], [8, 1]));
        Assert.Throws<ArgumentException>(() => TensorLayout.Contiguous(1L << 40, 1L << 40));
    }

    [Fact]
    public void HostTensor_ChecksMemoryLength()
    {
        var layout = new TensorLayout([3, 4], [10, 2]);
        var ok = new HostTensor<float>(new float[27], layout);
        Assert.Same(layout, ok.Layout);
        Assert.Equal(27, ok.Span.Length);
        var exception = Assert.Throws<ArgumentException>(() => new HostTensor<float>(new float[26], layout));
        Assert.Contains("26", exception.Message, StringComparison.Ordinal);
        Assert.Contains("27", exception.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentNullException>(() => new HostTensor<float>(new float[1], null!));
    }

    [Fact]
    public void HostTensor_Create_IsZeroedAndContiguous()
    {
        var tensor = HostTensor<BFloat16>.Create(2, 3, 4);
        Assert.Equal(24, tensor.Memory.Length);
        Assert.True(tensor.Layout.IsContiguous);
        Assert.All(tensor.Span.ToArray(), v => Assert.Equal(0, v.ToBits()));
        tensor.Span[(int)tensor.Layout.OffsetOf(1, 2, 3)] = BFloat16.One;
        Assert.Equal(1f, (float)tensor.Get(1, 2, 3));
        Assert.Throws<ArgumentException>(() => HostTensor<byte>.Create(1L << 32));
    }
}
