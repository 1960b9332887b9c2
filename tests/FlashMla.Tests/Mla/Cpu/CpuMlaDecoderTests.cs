using System.Diagnostics;
using FlashMla.Mla.Cpu;
using FlashMla.Mla;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cpu;

/// <summary>
/// CPU decoder against the float64 reference, once per element type (the concrete classes at the
/// end of the file pick the type and its output tolerance).
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
public abstract class CpuMlaDecoderTests<T>
    where T : unmanaged
{
    /// <summary>The output tolerance for this element type.</summary>
    protected abstract Tolerance OutputTolerance { get; }

    public static IEnumerable<TheoryDataRow<int, int, int, int, int, bool, bool, int>> PairwiseCases =>
        DecoderGrid.PairwiseCases.Select(c => new TheoryDataRow<int, int, int, int, int, bool, bool, int>(
            c.Batch, c.QueryLength, c.SeqlenK, c.QueryHeads, c.KvHeads, c.Varlen, c.Causal, c.PageBlockSize));

    [Theory]
    [MemberData(nameof(PairwiseCases))]
    public void Pairwise_MatchesReference(int batch, int queryLength, int seqlenK, int queryHeads, int kvHeads, bool varlen, bool causal, int pageBlockSize)
    {
        var gridCase = new GridCase(batch, queryLength, seqlenK, queryHeads, kvHeads, varlen, causal, pageBlockSize);
        RunAndCheck(gridCase.ToSpec(TestSeeds.Next($"Pairwise/{gridCase}/{TestTensors.DTypeName<T>()}")));
    }

    [Fact]
    public void Corner_LargestBatchHeadsSeqlen()
    {
        RunAndCheck(new DecodeCaseSpec
        {
            Batch = 6,
            QueryLength = 1,
            QueryHeads = 128,
            KvHeads = 1,
            SeqlenK = 1000,
            PageBlockSize = 64,
            Seed = TestSeeds.Next(Name()),
        });
    }

    [Fact]
    public void Corner_LargestWithMultiTokenCausalVarlen()
    {
        RunAndCheck(new DecodeCaseSpec
        {
            Batch = 6,
            QueryLength = 2,
            QueryHeads = 128,
            KvHeads = 8,
            SeqlenK = 1000,
            Varlen = true,
            ZeroLengthRequests = 2,
            Causal = true,
            PageBlockSize = 16,
            Seed = TestSeeds.Next(Name()),
        });
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Corner_AllSequencesEmpty_GiveZeroOutputAndInfiniteLse(bool causal)
    {
        var (decodeCase, output, lse) = RunAndCheck(new DecodeCaseSpec
        {
            Batch = 3,
            QueryLength = 2,
            QueryHeads = 16,
            KvHeads = 2,
            Lengths = [0, 0, 0],
            Causal = causal,
            PageBlockSize = 16,
            Seed = TestSeeds.Next(Name()),
        });

        Assert.All(TestTensors.ToDoubleArray(output), v => Assert.Equal(0.0, v));
        Assert.All(TestTensors.ToDoubleArray(lse), v => Assert.Equal(double.PositiveInfinity, v));
        Assert.Equal(3, decodeCase.Seqlens.Count);
    }

    [Fact]
    public void Corner_CausalQueryLongerThanSequence_RowsWithoutKeysAreZero()
    {
        // s_q = 4: with seqlen 1, query tokens 0..2 see no key; with seqlen 3, token 0 sees none.
        var (decodeCase, output, lse) = RunAndCheck(new DecodeCaseSpec
        {
            Batch = 5,
            QueryLength = 4,
            QueryHeads = 9,
            KvHeads = 3,
            Lengths = [1, 2, 3, 0, 5],
            Causal = true,
            PageBlockSize = 1,
            Seed = TestSeeds.Next(Name()),
        });

        var outValues = TestTensors.ToDoubleArray(output);
        var lseValues = TestTensors.ToDoubleArray(lse);
        for (var i = 0; i < 5; i++)
        {
            var seqlen = decodeCase.Seqlens[i];
            for (var token = 0; token < 4; token++)
            {
                var seesNothing = seqlen - 4 + token + 1 <= 0;
                for (var h = 0; h < 9; h++)
                {
                    var l = lseValues[(((i * 9) + h) * 4) + token];
                    Assert.Equal(seesNothing, double.IsPositiveInfinity(l));
                    if (seesNothing)
                    {
                        var row = outValues.AsSpan((((i * 4) + token) * 9 + h) * 512, 512);
                        Assert.True(row.IndexOfAnyExcept(0.0) < 0, $"row {i},{token},{h} must be 0");
                    }
                }
            }
        }
    }

    [Fact]
    public void Corner_ZeroLengthMixWithVarlen()
    {
        RunAndCheck(new DecodeCaseSpec
        {
            Batch = 6,
            QueryLength = 2,
            QueryHeads = 16,
            KvHeads = 1,
            SeqlenK = 140,
            Varlen = true,
            ZeroLengthRequests = 2,
            Causal = true,
            PageBlockSize = 64,
            Seed = TestSeeds.Next(Name()),
        });
    }

    [Theory]
    [InlineData(3)]
    [InlineData(48)]
    [InlineData(100)]
    public void PageSizesThatDoNotDivideTheBlockSize(int pageBlockSize)
    {
        // Scheduling blocks are 64 tokens whatever the page size; pages of 3, 48 or 100 tokens
        // straddle block boundaries.
        RunAndCheck(new DecodeCaseSpec
        {
            Batch = 3,
            QueryLength = 2,
            QueryHeads = 8,
            KvHeads = 2,
            SeqlenK = 260,
            Varlen = true,
            Causal = true,
            PageBlockSize = pageBlockSize,
            Seed = TestSeeds.Next(Name()),
        });
    }

    [Fact]
    public void HeadDim512_UsesAllColumnsAsValues()
    {
        RunAndCheck(new DecodeCaseSpec
        {
            Batch = 2,
            QueryLength = 2,
            QueryHeads = 16,
            KvHeads = 2,
            HeadDim = 512,
            SeqlenK = 140,
            Varlen = true,
            Causal = true,
            PageBlockSize = 16,
            Seed = TestSeeds.Next(Name()),
        });
    }

    [Theory]
    [InlineData(0.3f)]
    [InlineData(1.0f)]
    [InlineData(-0.05f)]
    public void ExplicitSoftmaxScale(float scale)
    {
        RunAndCheck(new DecodeCaseSpec
        {
            Batch = 2,
            QueryLength = 1,
            QueryHeads = 16,
            KvHeads = 1,
            SeqlenK = 300,
            SoftmaxScale = scale,
            PageBlockSize = 64,
            Seed = TestSeeds.Next(Name()),
        });
    }

    [Fact]
    public void NonContiguousLayouts_WriteOnlyInsideTheViews()
    {
        // RunAndCheck asserts padding in output and lse is never written.
        RunAndCheck(new DecodeCaseSpec
        {
            Batch = 3,
            QueryLength = 2,
            QueryHeads = 16,
            KvHeads = 2,
            SeqlenK = 140,
            Varlen = true,
            Causal = true,
            PageBlockSize = 16,
            NonContiguous = true,
            Seed = TestSeeds.Next(Name()),
        });
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(66)]
    [InlineData(500)]
    public void ExplicitSchedules_AnyPartCountGivesTheSameResult(int numParts)
    {
        var spec = new DecodeCaseSpec
        {
            Batch = 4,
            QueryLength = 2,
            QueryHeads = 16,
            KvHeads = 1,
            SeqlenK = 700,
            Varlen = true,
            ZeroLengthRequests = 2,
            Causal = true,
            PageBlockSize = 16,
            Seed = TestSeeds.Next(Name()),
        };
        var decodeCase = DecodeCase<T>.Create(spec);
        var schedule = DecodeSchedule.Compute(decodeCase.Seqlens.ToArray(), numParts);
        if (numParts >= 66)
        {
            Assert.True(schedule.TotalSlots > spec.Batch, "this schedule must split requests");
        }

        RunAndCheck(decodeCase, schedule, new CpuMlaDecoder());
    }

    [Fact]
    public void Result_DoesNotDependOnTheNumberOfThreads()
    {
        var decodeCase = DecodeCase<T>.Create(new DecodeCaseSpec
        {
            Batch = 3,
            QueryLength = 2,
            QueryHeads = 32,
            KvHeads = 2,
            SeqlenK = 500,
            Varlen = true,
            Causal = true,
            PageBlockSize = 16,
            Seed = TestSeeds.Next(Name()),
        });
        var schedule = DecodeSchedule.Compute(decodeCase.Seqlens.ToArray(), 40);
        var (out1, lse1) = Decode(decodeCase, schedule, new CpuMlaDecoder(1));
        var (out2, lse2) = Decode(decodeCase, schedule, new CpuMlaDecoder());
        Assert.Equal(TestTensors.Snapshot(out1), TestTensors.Snapshot(out2));
        Assert.Equal(TestTensors.Snapshot(lse1), TestTensors.Snapshot(lse2));
    }

    [Fact]
    public void GarbageBlockTableEntriesAndNaNSlots_AreNeverRead()
    {
        // Lengths that end exactly on a page boundary (64, 16), inside a page (1, 65) and at 0.
        var decodeCase = DecodeCase<T>.Create(new DecodeCaseSpec
        {
            Batch = 5,
            QueryLength = 2,
            QueryHeads = 8,
            KvHeads = 2,
            Lengths = [64, 16, 1, 0, 65],
            Causal = true,
            PageBlockSize = 16,
            Seed = TestSeeds.Next(Name()),
        });

        // The setup is what the test claims: garbage right after each request's last page ...
        var table = decodeCase.BlockTable;
        int[] firstUnused = [4, 1, 1, 0, 5];
        for (var i = 0; i < 5; i++)
        {
            for (var j = firstUnused[i]; j < decodeCase.MaxBlocksPerSequence; j++)
            {
                var id = table.Get(i, j);
                Assert.True(id < 0 || id >= decodeCase.NumBlocks, $"blockTable[{i}, {j}] = {id} should be garbage");
            }
        }

        // ... and NaN in the tail of a partly used page (request 2 uses 1 of 16 slots).
        var page = table.Get(2, 0);
        Assert.True(TestTensors.ToDouble(decodeCase.KCache.Get(page, 1, 0, 0)) is double.NaN);
        Assert.False(double.IsNaN(TestTensors.ToDouble(decodeCase.KCache.Get(page, 0, 0, 0))));

        var (output, lse) = Decode(decodeCase, null, new CpuMlaDecoder());
        Assert.All(TestTensors.ToDoubleArray(output), v => Assert.False(double.IsNaN(v)));
        Assert.All(TestTensors.ToDoubleArray(lse), v => Assert.False(double.IsNaN(v)));
        CheckAgainstReference(decodeCase, output, lse);
    }

    [Fact]
    public void Performance_Batch1Heads128Seqlen4096_IsFast()
    {
        var decodeCase = DecodeCase<T>.Create(new DecodeCaseSpec
        {
            Batch = 1,
            QueryLength = 1,
            QueryHeads = 128,
            KvHeads = 1,
            SeqlenK = 4096,
            PageBlockSize = 64,
            Seed = TestSeeds.Next(Name()),
        });
        var decoder = new CpuMlaDecoder();
        _ = Decode(decodeCase, null, decoder); // warm up the JIT
        var stopwatch = Stopwatch.StartNew();
        var (output, lse) = Decode(decodeCase, null, decoder);
        stopwatch.Stop();
        TestContext.Current.SendDiagnosticMessage($"b=1 h_q=128 s_k=4096 {TestTensors.DTypeName<T>()}: {stopwatch.Elapsed.TotalMilliseconds:F1} ms");

        // Generous bound for slow CI machines; a 2-core machine takes well under a second.
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(3), $"decode took {stopwatch.Elapsed.TotalMilliseconds:F0} ms");
        CheckAgainstReference(decodeCase, output, lse);
    }

    /// <summary>Generates, decodes, checks every element was written and compares with the reference.</summary>
    protected (DecodeCase<T> Case, HostTensor<T> Output, HostTensor<float> Lse) RunAndCheck(DecodeCaseSpec spec)
    {
        var decodeCase = DecodeCase<T>.Create(spec);
        var (output, lse) = RunAndCheck(decodeCase, null, new CpuMlaDecoder());
        return (decodeCase, output, lse);
    }

    /// <summary>Decodes a case, checks every element was written and compares with the reference.</summary>
    protected (HostTensor<T> Output, HostTensor<float> Lse) RunAndCheck(DecodeCase<T> decodeCase, DecodeSchedule? schedule, CpuMlaDecoder decoder)
    {
        var (output, lse) = Decode(decodeCase, schedule, decoder);
        CheckAgainstReference(decodeCase, output, lse);
        return (output, lse);
    }

    private static (HostTensor<T> Output, HostTensor<float> Lse) Decode(DecodeCase<T> decodeCase, DecodeSchedule? schedule, CpuMlaDecoder decoder)
    {
        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();
        if (schedule is null)
        {
            decoder.Decode(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, output, lse, decodeCase.Options);
        }
        else
        {
            decoder.Decode(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, schedule, output, lse, decodeCase.Options);
        }

        TestTensors.AssertFullyWrittenWithinView(output, "out", decodeCase.Description);
        TestTensors.AssertFullyWrittenWithinView(lse, "lse", decodeCase.Description);
        return (output, lse);
    }

    private void CheckAgainstReference(DecodeCase<T> decodeCase, HostTensor<T> output, HostTensor<float> lse)
    {
        Compare.AssertDecode(decodeCase, output, lse, OutputTolerance);
    }

    private static string Name([System.Runtime.CompilerServices.CallerMemberName] string member = "") =>
        $"{member}/{TestTensors.DTypeName<T>()}";
}

public sealed class CpuMlaDecoderTests_BFloat16 : CpuMlaDecoderTests<BFloat16>
{
    protected override Tolerance OutputTolerance => Tolerance.ForOutput(ElementType.BFloat16, roundsProbabilities: false);
}

public sealed class CpuMlaDecoderTests_Half : CpuMlaDecoderTests<Half>
{
    protected override Tolerance OutputTolerance => Tolerance.ForOutput(ElementType.Float16, roundsProbabilities: false);
}
