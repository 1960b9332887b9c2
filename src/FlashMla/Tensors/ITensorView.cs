namespace FlashMla.Tensors;

/// <summary>A tensor view: a layout over host or device memory (<see cref="HostTensor{T}"/>, <see cref="DeviceTensor{T}"/>).</summary>
public interface ITensorView
{
    /// <summary>The shape and strides in elements.</summary>
    TensorLayout Layout { get; }
}
