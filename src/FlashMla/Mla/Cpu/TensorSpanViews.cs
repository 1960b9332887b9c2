using System.Buffers;
using System.Numerics.Tensors;
using FlashMla.Tensors;

namespace FlashMla.Mla.Cpu;

/// <summary>
/// Views of pinned <see cref="TensorSpan{T}"/> / <see cref="ReadOnlyTensorSpan{T}"/> memory as
/// <see cref="HostTensor{T}"/>s, without copies: the same first element, lengths and strides (in
/// elements). Valid only while the caller keeps the memory pinned.
/// </summary>
internal static unsafe class TensorSpanViews
{
    /// <summary>Wraps <paramref name="pointer"/> (the span's first element, pinned) with the span's lengths and strides.</summary>
    /// <exception cref="ArgumentException">A stride is negative or the view spans more than <see cref="int.MaxValue"/> elements (ParamName <paramref name="paramName"/>).</exception>
    public static HostTensor<T> Wrap<T>(T* pointer, ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides, string paramName)
        where T : unmanaged
    {
        Span<long> shape = stackalloc long[lengths.Length];
        Span<long> steps = stackalloc long[strides.Length];
        for (var i = 0; i < lengths.Length; i++)
        {
            shape[i] = lengths[i];
            steps[i] = strides[i];
        }

        TensorLayout layout;
        try
        {
            layout = new TensorLayout(shape, steps);
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentException($"{paramName} cannot be viewed as a host tensor: {ex.Message}", paramName, ex);
        }

        if (layout.RequiredLength > int.MaxValue)
        {
            throw new ArgumentException(
                $"{paramName} spans {layout.RequiredLength} elements ({layout}); at most {int.MaxValue} are supported.", paramName);
        }

        var memory = layout.RequiredLength == 0
            ? Memory<T>.Empty
            : new PinnedMemory<T>(pointer, (int)layout.RequiredLength).Memory;
        return new HostTensor<T>(memory, layout);
    }

    /// <summary><see cref="Memory{T}"/> over memory pinned by the caller.</summary>
    private sealed class PinnedMemory<T> : MemoryManager<T>
        where T : unmanaged
    {
        private readonly T* _pointer;
        private readonly int _length;

        public PinnedMemory(T* pointer, int length)
        {
            _pointer = pointer;
            _length = length;
        }

        public override Span<T> GetSpan() => new(_pointer, _length);

        public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
