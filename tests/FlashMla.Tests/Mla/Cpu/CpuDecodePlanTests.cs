using System.Runtime.InteropServices;
using FlashMla.Mla.Cpu;
using FlashMla.Mla;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cpu;

/// <summary>
/// The CPU decoder's plan lifecycle (create once, update per step, decode per layer; the page
/// geometry enters at the update) and its mixed element types.
/// </summary>
public sealed class CpuDecodePlanTests
{
    private static DecodeCase<BFloat16> Case(int seed) => DecodeCase<BFloat16>.Create(new DecodeCaseSpec
    {
        Batch = 3,
        QueryLength = 2,
        QueryHeads = 16,
        KvHeads = 2,
        SeqlenK = 300,
        Varlen = true,
        Causal = true,
        PageBlockSize = 16,
        Seed = seed,
    });

    [Fact]
    public void PlanLifecycle_GivesTheOneCallResult_BitForBit()
    {
        var decodeCase = Case(TestSeeds.Next(nameof(PlanLifecycle_GivesTheOneCallResult_BitForBit)));
        var spec = decodeCase.Spec;
        var decoder = new CpuMlaDecoder();
        var oneCall = decodeCase.NewOutput();
        var oneCallLse = decodeCase.NewLse();
        decoder.Decode(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, oneCall, oneCallLse, decodeCase.Options);

        var plan = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        Assert.False(plan.IsScheduled);
        decoder.UpdatePlan(plan, decodeCase.CacheSeqlens, decodeCase.MaxBlocksPerSequence, spec.PageBlockSize);
        Assert.True(plan.IsScheduled);
        Assert.Equal(spec.PageBlockSize, plan.PageBlockSize);
        Assert.Equal(decodeCase.MaxBlocksPerSequence, plan.MaxBlocksPerSequence);
        Assert.Equal((long)decodeCase.MaxBlocksPerSequence * spec.PageBlockSize, plan.ScheduledCapacity);
        for (var layer = 0; layer < 2; layer++)
        {
            var output = decodeCase.NewOutput();
            var lse = decodeCase.NewLse();
            decoder.Decode(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, plan, output, lse, decodeCase.Options);
            Assert.True(MemoryMarshal.AsBytes(oneCall.Span).SequenceEqual(MemoryMarshal.AsBytes(output.Span)), $"layer {layer}: out differs");
            Assert.True(MemoryMarshal.AsBytes(oneCallLse.Span).SequenceEqual(MemoryMarshal.AsBytes(lse.Span)), $"layer {layer}: lse differs");
        }
    }

    [Fact]
    public void Plan_ThatDoesNotFitTheCall_IsRejectedOnPlan_BeforeWriting()
    {
        var decodeCase = Case(TestSeeds.Next(nameof(Plan_ThatDoesNotFitTheCall_IsRejectedOnPlan_BeforeWriting)));
        var spec = decodeCase.Spec;
        var decoder = new CpuMlaDecoder();
        var output = TestTensors.AllocatePoisoned<BFloat16>(false, spec.Batch, spec.QueryLength, spec.QueryHeads, 512);
        var lse = TestTensors.AllocatePoisoned<float>(false, spec.Batch, spec.QueryHeads, spec.QueryLength);
        void Decode(CpuDecodePlan plan) =>
            decoder.Decode(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, plan, output, lse, decodeCase.Options);

        var notUpdated = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        Assert.Equal("plan", Assert.Throws<ArgumentException>(() => Decode(notUpdated)).ParamName);

        var otherHeads = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads * 2, spec.KvHeads);
        decoder.UpdatePlan(otherHeads, decodeCase.CacheSeqlens, decodeCase.MaxBlocksPerSequence, spec.PageBlockSize);
        Assert.Equal("plan", Assert.Throws<ArgumentException>(() => Decode(otherHeads)).ParamName);

        // Same capacity, another geometry: the cache's page size is not the one the plan was updated for.
        var otherPages = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        decoder.UpdatePlan(otherPages, decodeCase.CacheSeqlens, decodeCase.MaxBlocksPerSequence * 2, spec.PageBlockSize / 2);
        var ex = Assert.Throws<ArgumentException>(() => Decode(otherPages));
        Assert.Equal("plan", ex.ParamName);
        Assert.Contains($"page_block_size {spec.PageBlockSize / 2}", ex.Message, StringComparison.Ordinal);

        // Other lengths than the plan was updated for.
        var otherLengths = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        var zeros = HostTensor<int>.Create(spec.Batch);
        decoder.UpdatePlan(otherLengths, zeros, decodeCase.MaxBlocksPerSequence, spec.PageBlockSize);
        Assert.Equal("plan", Assert.Throws<ArgumentException>(() => Decode(otherLengths)).ParamName);

        TestTensors.AssertUntouched(output, "output");
        TestTensors.AssertUntouched(lse, "lse");
    }

    [Fact]
    public void UpdatePlan_RejectsLengthsOutsideTheCapacity()
    {
        var decoder = new CpuMlaDecoder();
        var plan = decoder.CreatePlan(2, 1, 16, 1);
        var seqlens = new HostTensor<int>(new[] { 10, 65 }, TensorLayout.Contiguous(2));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => decoder.UpdatePlan(plan, seqlens, 4, 16));
        Assert.Equal("cacheSeqlens", ex.ParamName);
        Assert.Contains("cacheSeqlens[1] = 65", ex.Message, StringComparison.Ordinal);
        Assert.False(plan.IsScheduled);
        Assert.Throws<ArgumentOutOfRangeException>(() => decoder.UpdatePlan(plan, seqlens, 0, 16));
        Assert.Throws<ArgumentException>(() => decoder.UpdatePlan(plan, HostTensor<int>.Create(3), 8, 16));
    }

    /// <summary>q, the cache and the output may have different element types on the CPU.</summary>
    [Fact]
    public void MixedElementTypes_MatchTheReference()
    {
        var decodeCase = Case(TestSeeds.Next(nameof(MixedElementTypes_MatchTheReference)));
        var reference = NaiveMlaReference.Compute(decodeCase);
        var spec = decodeCase.Spec;
        var decoder = new CpuMlaDecoder();
        var plan = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        decoder.UpdatePlan(plan, decodeCase.CacheSeqlens, decodeCase.MaxBlocksPerSequence, spec.PageBlockSize);

        // bf16 q and cache, fp16 output.
        var halfOutput = TestTensors.AllocatePoisoned<Half>(false, spec.Batch, spec.QueryLength, spec.QueryHeads, 512);
        var lse = decodeCase.NewLse();
        decoder.Decode(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, plan, halfOutput, lse, decodeCase.Options);
        Compare.AssertDecode(reference, halfOutput, lse, Tolerance.OutputHalf, decodeCase.Description);

        // fp16 q (the bf16 values, converted), bf16 cache with its format given, bf16 output.
        var halfQ = new HostTensor<Half>(decodeCase.Q.Span.ToArray().Select(v => (Half)(float)v).ToArray(), decodeCase.Q.Layout);
        var cache = new HostKvCache<BFloat16>(decodeCase.KCache, KvCacheFormat.Dense(ElementType.BFloat16, spec.HeadDim));
        var output = decodeCase.NewOutput();
        lse = decodeCase.NewLse();
        decoder.Decode(halfQ, cache, decodeCase.BlockTable, decodeCase.CacheSeqlens, plan, output, lse, decodeCase.Options);
        Compare.AssertDecode(reference, output, lse, Tolerance.Output, decodeCase.Description);
    }

    [Fact]
    public void KvFormat_ThatDoesNotDescribeTheCache_IsRejectedOnKCache()
    {
        var decodeCase = Case(TestSeeds.Next(nameof(KvFormat_ThatDoesNotDescribeTheCache_IsRejectedOnKCache)));
        var spec = decodeCase.Spec;
        var decoder = new CpuMlaDecoder();
        var plan = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        decoder.UpdatePlan(plan, decodeCase.CacheSeqlens, decodeCase.MaxBlocksPerSequence, spec.PageBlockSize);
        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();
        foreach (var format in new[] { KvCacheFormat.Dense(ElementType.Float16, 576), KvCacheFormat.Dense(ElementType.BFloat16, 512) })
        {
            var cache = new HostKvCache<BFloat16>(decodeCase.KCache, format);
            var ex = Assert.Throws<ArgumentException>(
                () => decoder.Decode(decodeCase.Q, cache, decodeCase.BlockTable, decodeCase.CacheSeqlens, plan, output, lse, decodeCase.Options));
            Assert.Equal("kCache", ex.ParamName);
        }

        TestTensors.AssertUntouched(output, "output");
    }
}
