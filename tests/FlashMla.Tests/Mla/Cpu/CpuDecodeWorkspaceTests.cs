using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cpu;

/// <summary>
/// The CPU decoder's reusable workspace and its tile kernels: no allocation per call in steady
/// state, every SIMD width against the reference, and one decoder shared by several threads.
/// </summary>
public sealed class CpuDecodeWorkspaceTests
{
    /// <summary>A case whose requests are split (so the combine runs too), causal, with varlen and small pages.</summary>
    private static DecodeCaseSpec SplitCase(string name) => new()
    {
        Batch = 3,
        QueryLength = 2,
        QueryHeads = 12,
        KvHeads = 1,
        SeqlenK = 700,
        Varlen = true,
        Causal = true,
        PageBlockSize = 16,
        Seed = TestSeeds.Next(name),
    };

    [Fact]
    public void DecodeWithAPlan_OnOneThread_AllocatesNothingAfterWarmUp()
    {
        // One worker runs everything on the calling thread, so the per-thread count sees all of it.
        var decodeCase = DecodeCase<BFloat16>.Create(SplitCase(nameof(DecodeWithAPlan_OnOneThread_AllocatesNothingAfterWarmUp)));
        var decoder = new CpuMlaDecoder(1);
        var plan = decoder.CreatePlan(3, 2, 12, 1);
        decoder.UpdatePlan(plan, decodeCase.CacheSeqlens, decodeCase.MaxBlocksPerSequence, decodeCase.Spec.PageBlockSize);
        Assert.True(plan.Schedule!.TotalSlots > 3, "the case must split requests so that the combine runs");
        var cache = HostKvCache<BFloat16>.Dense(decodeCase.KCache);
        var options = decodeCase.Options;
        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();
        for (var i = 0; i < 3; i++)
        {
            decoder.Decode(decodeCase.Q, cache, decodeCase.BlockTable, decodeCase.CacheSeqlens, plan, output, lse, options);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10; i++)
        {
            decoder.Decode(decodeCase.Q, cache, decodeCase.BlockTable, decodeCase.CacheSeqlens, plan, output, lse, options);
        }

        var perCall = (GC.GetAllocatedBytesForCurrentThread() - before) / 10;
        Assert.Equal(0, perCall);
        Compare.AssertDecode(decodeCase, output, lse, Tolerance.ForOutput(ElementType.BFloat16, roundsProbabilities: false));
    }

    [Fact]
    public void DecodeWithAPlan_OnAllThreads_AllocatesOnlyTheParallelLoopsBookkeeping()
    {
        // The calling thread takes part in Parallel.For, whose own bookkeeping (a few hundred bytes
        // per loop, whatever the shape) is all that may remain; the decoder's buffers are reused.
        var decodeCase = DecodeCase<BFloat16>.Create(SplitCase(nameof(DecodeWithAPlan_OnAllThreads_AllocatesOnlyTheParallelLoopsBookkeeping)) with { QueryHeads = 64, SeqlenK = 2000 });
        var decoder = new CpuMlaDecoder(2);
        var plan = decoder.CreatePlan(3, 2, 64, 1);
        decoder.UpdatePlan(plan, decodeCase.CacheSeqlens, decodeCase.MaxBlocksPerSequence, decodeCase.Spec.PageBlockSize);
        var cache = HostKvCache<BFloat16>.Dense(decodeCase.KCache);
        var options = decodeCase.Options;
        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();
        for (var i = 0; i < 3; i++)
        {
            decoder.Decode(decodeCase.Q, cache, decodeCase.BlockTable, decodeCase.CacheSeqlens, plan, output, lse, options);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10; i++)
        {
            decoder.Decode(decodeCase.Q, cache, decodeCase.BlockTable, decodeCase.CacheSeqlens, plan, output, lse, options);
        }

        var perCall = (GC.GetAllocatedBytesForCurrentThread() - before) / 10;
        TestContext.Current.SendDiagnosticMessage($"allocated per call on the calling thread: {perCall} B");
        Assert.True(perCall < 4096, $"a decode allocated {perCall} bytes per call on the calling thread");
    }

    [Theory]
    [InlineData(128)]
    [InlineData(256)]
    [InlineData(512)]
    public void EveryVectorWidth_MatchesReference(int vectorBits)
    {
        // 24 rows per KV head: an odd number of vectors at 256 bits (the one-vector kernels run),
        // padding at 512 bits, three vector pairs at 128 bits. Widths the CPU lacks are emulated.
        foreach (var type in new[] { ElementType.BFloat16, ElementType.Float16 })
        {
            var decodeCase = DecodeCase.Create(SplitCase($"{nameof(EveryVectorWidth_MatchesReference)}/{vectorBits}/{type}") with { ElementType = type });
            var decoder = new CpuMlaDecoder(-1, vectorBits);
            Assert.Equal(vectorBits, decoder.VectorBits);
            switch (decodeCase)
            {
                case DecodeCase<BFloat16> bf16:
                    Check(bf16, decoder, ElementType.BFloat16);
                    break;
                case DecodeCase<Half> fp16:
                    Check(fp16, decoder, ElementType.Float16);
                    break;
                default:
                    Assert.Fail($"unexpected case type {decodeCase.GetType()}");
                    break;
            }
        }
    }

    [Fact]
    public void TheDefaultWidth_IsTheWidestAccelerated()
    {
        var expected = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? 512
            : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? 256 : 128;
        Assert.Equal(expected, new CpuMlaDecoder().VectorBits);
    }

    [Fact]
    public void AnUnknownWidth_IsRejected()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new CpuMlaDecoder(1, 64));
        Assert.Equal("vectorBits", ex.ParamName);
    }

    [Fact]
    public void OneDecoder_UsedFromSeveralThreadsAtOnce_GivesTheSameResults()
    {
        var cases = Enumerable.Range(0, 4)
            .Select(i => DecodeCase<BFloat16>.Create(SplitCase($"{nameof(OneDecoder_UsedFromSeveralThreadsAtOnce_GivesTheSameResults)}/{i}") with { QueryHeads = 8 * (i + 1) }))
            .ToArray();
        var decoder = new CpuMlaDecoder();
        // The same parallelism, so the same schedule as the shared decoder; one call at a time.
        var expected = cases.Select(c => Decode(new CpuMlaDecoder(), c)).ToArray();
        var actual = new (BFloat16[] Output, float[] Lse)[cases.Length];
        Parallel.For(0, cases.Length * 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => actual[i % cases.Length] = Decode(decoder, cases[i % cases.Length]));
        for (var i = 0; i < cases.Length; i++)
        {
            Assert.Equal(expected[i].Output, actual[i].Output);
            Assert.Equal(expected[i].Lse, actual[i].Lse);
        }
    }

    private static (BFloat16[] Output, float[] Lse) Decode(CpuMlaDecoder decoder, DecodeCase<BFloat16> decodeCase)
    {
        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();
        decoder.Decode(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, output, lse, decodeCase.Options);
        return (TestTensors.Snapshot(output), TestTensors.Snapshot(lse));
    }

    private static void Check<T>(DecodeCase<T> decodeCase, CpuMlaDecoder decoder, ElementType type)
        where T : unmanaged
    {
        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();
        var schedule = DecodeSchedule.Compute(decodeCase.Seqlens.ToArray(), 7);
        Assert.True(schedule.TotalSlots > decodeCase.Spec.Batch, "the schedule must split requests");
        decoder.Decode(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, schedule, output, lse, decodeCase.Options);
        TestTensors.AssertFullyWrittenWithinView(output, "out", decodeCase.Description);
        TestTensors.AssertFullyWrittenWithinView(lse, "lse", decodeCase.Description);
        Compare.AssertDecode(decodeCase, output, lse, Tolerance.ForOutput(type, roundsProbabilities: false));
    }
}
