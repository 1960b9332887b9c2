using System.Runtime.CompilerServices;
using FlashMla.Mla;

namespace FlashMla.Tests.Mla;

public class DecodeScheduleTests
{
    [Fact]
    public void WorkedExample_FromTheNotes()
    {
        // seqlens {4096, 64}, 4 parts: blocks {64, 1}, total 75, payload 24.
        var schedule = DecodeSchedule.Compute([4096, 64], 4);
        Assert.Equal([0, 4, 5], schedule.NumSplits.ToArray());
        Assert.Equal(5, schedule.TotalSlots);
        Assert.Equal(4, schedule.NumParts);
        Assert.Equal(2, schedule.Batch);
        DecodePart[] expected =
        [
            new(0, 0, 0, 19, 0, 1, 1, 0),
            new(0, 0, 19, 38, 1, 1, 1, 0),
            new(0, 0, 38, 57, 2, 1, 1, 0),
            new(0, 1, 57, 1, 3, 1, 0, 0),
        ];
        Assert.Equal(expected, schedule.Parts.ToArray());
        Assert.Equal(4, schedule.SplitCount(0));
        Assert.Equal(1, schedule.SplitCount(1));
        CheckInvariants(schedule, [4096, 64], "worked example");
    }

    [Fact]
    public void PartsWithoutWork_BeginAtTheBatchSize()
    {
        // total 6, payload ceil(6/8)+5 = 6: part 0 takes everything.
        var schedule = DecodeSchedule.Compute([64], 8);
        Assert.Equal(new DecodePart(0, 0, 0, 1, 0, 0, 0, 0), schedule.Parts[0]);
        for (var p = 1; p < 8; p++)
        {
            Assert.Equal(new DecodePart(1, 0, 0, 1, 0, 0, 0, 0), schedule.Parts[p]);
        }

        Assert.Equal([0, 1], schedule.NumSplits.ToArray());
    }

    [Fact]
    public void ZeroLengthRequests_CostOneBlock_AndHaveEmptyRanges()
    {
        // blocks {0→1, 2, 0→1}: total 4 + 15 = 19; one part takes all three.
        var schedule = DecodeSchedule.Compute([0, 100, 0], 1);
        Assert.Equal(new DecodePart(0, 2, 0, 0, 0, 0, 0, 0), schedule.Parts[0]);
        Assert.Equal([0, 1, 2, 3], schedule.NumSplits.ToArray());

        // An empty request at the end of a part gives end block 0.
        var two = DecodeSchedule.Compute([0, 0, 0, 0], 2); // total 24, payload 17: 2 requests per part
        Assert.Equal(new DecodePart(0, 1, 0, 0, 0, 0, 0, 0), two.Parts[0]);
        Assert.Equal(new DecodePart(2, 3, 0, 0, 0, 0, 0, 0), two.Parts[1]);
        CheckInvariants(two, [0, 0, 0, 0], "zeros");
    }

    [Fact]
    public void PartEndingMidRequest_AfterCompletingOthers()
    {
        // {64, 64, 640}: blocks {1, 1, 10}, total 27, 2 parts → payload 19. Part 0: request 0
        // (6), request 1 (6), then 7 − 5 = 2 blocks of request 2. Part 1: the last 8 blocks.
        var schedule = DecodeSchedule.Compute([64, 64, 640], 2);
        Assert.Equal(new DecodePart(0, 2, 0, 2, 0, 0, 1, 0), schedule.Parts[0]);
        Assert.Equal(new DecodePart(2, 2, 2, 10, 1, 1, 1, 0), schedule.Parts[1]);
        Assert.Equal([0, 1, 2, 4], schedule.NumSplits.ToArray());
    }

    [Theory]
    [InlineData(132, 1, 128, 1, 66)]
    [InlineData(132, 2, 128, 1, 33)]
    [InlineData(132, 1, 16, 1, 132)]
    [InlineData(132, 1, 128, 8, 16)]
    [InlineData(132, 4, 128, 2, 16)]
    [InlineData(132, 3, 128, 1, 22)]
    [InlineData(1, 4, 128, 1, 1)]
    [InlineData(78, 1, 64, 64, 1)]
    public void PartsFor_FollowsFlashMla(int sms, int queryLength, int queryHeads, int kvHeads, int expected)
    {
        Assert.Equal(expected, DecodeSchedule.PartsFor(sms, queryLength, queryHeads, kvHeads));
    }

    [Fact]
    public void BadArguments_Throw()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => DecodeSchedule.Compute([1], 0));
        Assert.Throws<ArgumentException>(() => DecodeSchedule.Compute([], 4));
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => DecodeSchedule.Compute([5, -2], 4));
        Assert.Equal("cacheSeqlens", negative.ParamName);
        Assert.Contains("cacheSeqlens[1] = -2", negative.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => DecodeSchedule.PartsFor(132, 1, 128, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => DecodeSchedule.PartsFor(0, 1, 128, 1));
    }

    [Fact]
    public void PartRecord_Is32Bytes()
    {
        Assert.Equal(32, Unsafe.SizeOf<DecodePart>());
        var part = new DecodePart(1, 2, 3, 4, 5, 6, 7, 8);
        var ints = System.Runtime.InteropServices.MemoryMarshal.Cast<DecodePart, int>(new[] { part });
        Assert.Equal([1, 2, 3, 4, 5, 6, 7, 8], ints.ToArray());
    }

    [Fact]
    public void RandomBatches_CoverEveryRequestExactlyOnce()
    {
        var seed = TestSeeds.Next();
        var rng = new Random(seed);
        for (var trial = 0; trial < 400; trial++)
        {
            var batch = rng.Next(1, 40);
            var seqlens = new int[batch];
            for (var i = 0; i < batch; i++)
            {
                seqlens[i] = rng.Next(4) switch
                {
                    0 => 0,
                    1 => rng.Next(1, 130),
                    2 => rng.Next(1, 5000),
                    _ => 64 * rng.Next(1, 80),
                };
            }

            var parts = rng.Next(3) == 0 ? rng.Next(1, 5) : rng.Next(1, 200);
            var schedule = DecodeSchedule.Compute(seqlens, parts);
            CheckInvariants(schedule, seqlens, $"seed={seed} trial={trial} parts={parts} seqlens=[{string.Join(",", seqlens)}]");
        }
    }

    /// <summary>
    /// The schedule's contract: every request's blocks [0, ceil(n/64)) are covered exactly once by
    /// pieces in split order; split counts, flags and slot numbers agree; parts are in request order;
    /// total slots ≤ b + parts.
    /// </summary>
    internal static void CheckInvariants(DecodeSchedule schedule, int[] seqlens, string context)
    {
        var batch = seqlens.Length;
        var numSplits = schedule.NumSplits.ToArray();
        Assert.Equal(batch + 1, numSplits.Length);
        Assert.Equal(0, numSplits[0]);
        Assert.True(schedule.TotalSlots <= batch + schedule.NumParts, $"slots {schedule.TotalSlots} > b + parts; {context}");

        var pieces = Enumerable.Range(0, batch).Select(_ => new List<(int Split, int Begin, int End, bool Split2)>()).ToArray();
        var lastRequest = -1;
        var sawEmpty = false;
        foreach (var part in schedule.Parts)
        {
            Assert.Equal(0, part.Padding);
            if (part.BeginRequest == batch)
            {
                sawEmpty = true;
                Assert.Equal(new DecodePart(batch, batch - 1, 0, BlocksOf(seqlens[batch - 1]), 0, 0, 0, 0), part);
                continue;
            }

            Assert.False(sawEmpty, $"a part with work follows an empty part; {context}");
            Assert.InRange(part.BeginRequest, 0, batch - 1);
            Assert.InRange(part.EndRequest, part.BeginRequest, batch - 1);
            Assert.True(part.BeginRequest >= lastRequest, context);
            lastRequest = part.EndRequest;
            if (part.BeginRequest == part.EndRequest)
            {
                Assert.Equal(part.FirstRequestIsSplit, part.LastRequestIsSplit);
            }

            for (var r = part.BeginRequest; r <= part.EndRequest; r++)
            {
                var begin = r == part.BeginRequest ? part.BeginBlock : 0;
                var end = r == part.EndRequest ? part.EndBlock : BlocksOf(seqlens[r]);
                var split = r == part.BeginRequest ? part.BeginSplit : 0;
                var isSplit = r == part.BeginRequest ? part.FirstRequestIsSplit : r == part.EndRequest ? part.LastRequestIsSplit : 0;
                pieces[r].Add((split, begin, end, isSplit != 0));
            }
        }

        for (var r = 0; r < batch; r++)
        {
            var list = pieces[r];
            var count = numSplits[r + 1] - numSplits[r];
            Assert.True(list.Count == count, $"request {r}: {list.Count} pieces but num_splits says {count}; {context}");
            Assert.Equal(count, schedule.SplitCount(r));
            var next = 0;
            for (var k = 0; k < list.Count; k++)
            {
                var (split, begin, end, isSplit) = list[k];
                Assert.True(split == k, $"request {r}: piece {k} has split index {split}; {context}");
                Assert.True(begin == next, $"request {r}: piece {k} begins at {begin}, expected {next}; {context}");
                Assert.True(end > begin || seqlens[r] == 0, $"request {r}: empty piece {k}; {context}");
                Assert.True(isSplit == (count > 1), $"request {r}: piece {k} split flag {isSplit} but {count} pieces; {context}");
                next = end;
            }

            Assert.True(next == BlocksOf(seqlens[r]), $"request {r}: covered up to block {next} of {BlocksOf(seqlens[r])}; {context}");
        }
    }

    private static int BlocksOf(int seqlen) => (seqlen + 63) / 64;
}
