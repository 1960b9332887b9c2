using System.Numerics.Tensors;
using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cpu;

/// <summary>
/// The System.Numerics.Tensors entry points of <see cref="CpuMlaDecoder"/>: the same results as the
/// host-tensor path (bit for bit, over the same memory, contiguous or strided), checked against the
/// reference, and the same exceptions for bad input.
/// </summary>
public sealed class CpuTensorSpanTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OneCallDecode_OverTensorSpans_MatchesTheHostTensorPathAndTheReference(bool nonContiguous)
    {
        var decodeCase = DecodeCase<BFloat16>.Create(Spec($"{nameof(OneCallDecode_OverTensorSpans_MatchesTheHostTensorPathAndTheReference)}/{nonContiguous}") with { NonContiguous = nonContiguous });
        var decoder = new CpuMlaDecoder();
        var expectedOut = decodeCase.NewOutput();
        var expectedLse = decodeCase.NewLse();
        decoder.Decode(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, expectedOut, expectedLse, decodeCase.Options);

        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();
        decoder.Decode(
            ReadOnly(decodeCase.Q), ReadOnly(decodeCase.KCache), ReadOnly(decodeCase.BlockTable), ReadOnly(decodeCase.CacheSeqlens),
            Writable(output), Writable(lse), decodeCase.Options);

        TestTensors.AssertFullyWrittenWithinView(output, "out", decodeCase.Description);
        TestTensors.AssertFullyWrittenWithinView(lse, "lse", decodeCase.Description);
        Assert.Equal(TestTensors.Snapshot(expectedOut), TestTensors.Snapshot(output));
        Assert.Equal(TestTensors.Snapshot(expectedLse), TestTensors.Snapshot(lse));
        Compare.AssertDecode(decodeCase, output, lse, Tolerance.ForOutput(ElementType.BFloat16, roundsProbabilities: false));
    }

    [Fact]
    public void PlanLifecycle_OverTensorSpans_MatchesTheReference()
    {
        var decodeCase = DecodeCase<Half>.Create(Spec(nameof(PlanLifecycle_OverTensorSpans_MatchesTheReference)) with { ElementType = ElementType.Float16 });
        var decoder = new CpuMlaDecoder();
        var plan = decoder.CreatePlan(decodeCase.Spec.Batch, decodeCase.Spec.QueryLength, decodeCase.Spec.QueryHeads, decodeCase.Spec.KvHeads);
        decoder.UpdatePlan(plan, ReadOnly(decodeCase.CacheSeqlens), decodeCase.MaxBlocksPerSequence, decodeCase.Spec.PageBlockSize);
        Assert.True(plan.IsScheduled);
        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();
        decoder.Decode(
            ReadOnly(decodeCase.Q), ReadOnly(decodeCase.KCache), ReadOnly(decodeCase.BlockTable), ReadOnly(decodeCase.CacheSeqlens),
            plan, Writable(output), Writable(lse), decodeCase.Options);
        Compare.AssertDecode(decodeCase, output, lse, Tolerance.ForOutput(ElementType.Float16, roundsProbabilities: false));

        var schedule = decoder.CreateSchedule(ReadOnly(decodeCase.CacheSeqlens), decodeCase.Spec.QueryLength, decodeCase.Spec.QueryHeads, decodeCase.Spec.KvHeads);
        Assert.Equal(plan.Schedule!.NumSplits.ToArray(), schedule.NumSplits.ToArray());
    }

    [Fact]
    public void BadShapes_OverTensorSpans_NameTheParameter_AndWriteNothing()
    {
        var decodeCase = DecodeCase<BFloat16>.Create(Spec(nameof(BadShapes_OverTensorSpans_NameTheParameter_AndWriteNothing)));
        var decoder = new CpuMlaDecoder();
        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();

        // q of rank 3.
        var q = decodeCase.Q;
        ReadOnlySpan<BFloat16> qMemory = q.Span;
        var flatQ = new ReadOnlyTensorSpan<BFloat16>(qMemory, [(nint)(q.Layout.Shape[0] * q.Layout.Shape[1]), (nint)q.Layout.Shape[2], (nint)q.Layout.Shape[3]], []);
        ArgumentException? caught = null;
        try
        {
            decoder.Decode(flatQ, ReadOnly(decodeCase.KCache), ReadOnly(decodeCase.BlockTable), ReadOnly(decodeCase.CacheSeqlens), Writable(output), Writable(lse), decodeCase.Options);
        }
        catch (ArgumentException ex)
        {
            caught = ex;
        }

        Assert.Equal("q", Assert.IsType<ArgumentException>(caught).ParamName);

        // An output with 256 value columns.
        var shortOutput = new BFloat16[decodeCase.Spec.Batch * decodeCase.Spec.QueryLength * decodeCase.Spec.QueryHeads * 256];
        var outSpan = new TensorSpan<BFloat16>(shortOutput, [decodeCase.Spec.Batch, decodeCase.Spec.QueryLength, decodeCase.Spec.QueryHeads, 256]);
        caught = null;
        try
        {
            decoder.Decode(ReadOnly(decodeCase.Q), ReadOnly(decodeCase.KCache), ReadOnly(decodeCase.BlockTable), ReadOnly(decodeCase.CacheSeqlens), outSpan, Writable(lse), decodeCase.Options);
        }
        catch (ArgumentException ex)
        {
            caught = ex;
        }

        Assert.Equal("output", Assert.IsType<ArgumentException>(caught).ParamName);

        // A length past the block table's capacity.
        var lengths = decodeCase.Seqlens.ToArray();
        lengths[0] = (decodeCase.MaxBlocksPerSequence * decodeCase.Spec.PageBlockSize) + 1;
        caught = null;
        try
        {
            decoder.Decode(ReadOnly(decodeCase.Q), ReadOnly(decodeCase.KCache), ReadOnly(decodeCase.BlockTable), new ReadOnlyTensorSpan<int>(lengths), Writable(output), Writable(lse), decodeCase.Options);
        }
        catch (ArgumentException ex)
        {
            caught = ex;
        }

        Assert.Equal("cacheSeqlens", Assert.IsType<ArgumentOutOfRangeException>(caught).ParamName);

        TestTensors.AssertUntouched(output, "out");
        TestTensors.AssertUntouched(lse, "lse");
    }

    private static DecodeCaseSpec Spec(string name) => new()
    {
        Batch = 3,
        QueryLength = 2,
        QueryHeads = 16,
        KvHeads = 2,
        SeqlenK = 300,
        Varlen = true,
        Causal = true,
        PageBlockSize = 16,
        Seed = TestSeeds.Next(name),
    };

    /// <summary>A read-only tensor span over a host tensor's memory with its lengths and strides.</summary>
    private static ReadOnlyTensorSpan<T> ReadOnly<T>(HostTensor<T> tensor)
        where T : unmanaged
    {
        var (lengths, strides) = Dims(tensor.Layout);
        return new ReadOnlyTensorSpan<T>(tensor.Span[..(int)tensor.Layout.RequiredLength], lengths, strides);
    }

    /// <summary>A writable tensor span over a host tensor's memory with its lengths and strides.</summary>
    private static TensorSpan<T> Writable<T>(HostTensor<T> tensor)
        where T : unmanaged
    {
        var (lengths, strides) = Dims(tensor.Layout);
        return new TensorSpan<T>(tensor.Span[..(int)tensor.Layout.RequiredLength], lengths, strides);
    }

    private static (nint[] Lengths, nint[] Strides) Dims(TensorLayout layout) =>
        (layout.Shape.ToArray().Select(x => (nint)x).ToArray(), layout.Strides.ToArray().Select(x => (nint)x).ToArray());
}
