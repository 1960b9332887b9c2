using System.Runtime.InteropServices;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Testing;

/// <summary>The generator builds what it promises: FlashMLA's distributions and layout, seeded.</summary>
public class DecodeCaseTests
{
    [Fact]
    public void Generator_BuildsWhatItPromises()
    {
        var decodeCase = DecodeCase<Half>.Create(new DecodeCaseSpec { Batch = 6, QueryLength = 2, SeqlenK = 300, Varlen = true, ZeroLengthRequests = 2, PageBlockSize = 16, Seed = TestSeeds.Next() });
        Assert.Contains(0, decodeCase.Seqlens);
        var used = new HashSet<int>();
        var inOrder = new List<int>();
        for (var i = 0; i < 6; i++)
        {
            var seqlen = decodeCase.Seqlens[i];
            var pages = (seqlen + 15) / 16;
            for (var j = 0; j < decodeCase.MaxBlocksPerSequence; j++)
            {
                var id = decodeCase.BlockTable.Get(i, j);
                if (j < pages)
                {
                    Assert.InRange(id, 0, decodeCase.NumBlocks - 1);
                    Assert.True(used.Add(id), "pages are not shared");
                    inOrder.Add(id);
                }
                else
                {
                    Assert.True(id < 0 || id >= decodeCase.NumBlocks);
                }
            }

            if (seqlen % 16 != 0)
            {
                var last = decodeCase.BlockTable.Get(i, pages - 1);
                Assert.True(Half.IsNaN(decodeCase.KCache.Get(last, seqlen % 16, 0, 0)), "tail slots are NaN");
                Assert.False(Half.IsNaN(decodeCase.KCache.Get(last, (seqlen % 16) - 1, 0, 575)));
            }
        }

        for (var block = 0; block < decodeCase.NumBlocks; block++)
        {
            if (!used.Contains(block))
            {
                Assert.True(Half.IsNaN(decodeCase.KCache.Get(block, 0, 0, 0)), "unused pages are NaN");
            }
        }

        var q = TestTensors.ToDoubleArray(decodeCase.Q);
        Assert.All(q, v => Assert.InRange(v, -1.0, 1.0));
        var sd = Math.Sqrt(q.Select(v => v * v).Average());
        Assert.InRange(sd, 0.09, 0.11);

        // Block ids are shuffled, not handed out in order.
        Assert.NotEqual(inOrder.Order().ToArray(), inOrder.ToArray());
    }

    [Fact]
    public void Random_inputs_follow_flashmla_test_generation()
    {
        var spec = new DecodeCaseSpec { Batch = 3, SeqlenK = 100, Varlen = true, QueryHeads = 4, PageBlockSize = 64, Seed = 7, ZeroLengthRequests = 1 };
        var a = DecodeCase<BFloat16>.Create(spec);
        var b = DecodeCase<BFloat16>.Create(spec);
        Assert.Equal(Bits(a.Q), Bits(b.Q));
        Assert.Equal(a.BlockTable.Span.ToArray(), b.BlockTable.Span.ToArray());
        Assert.Equal(a.Seqlens, b.Seqlens);
        Assert.Single(a.Seqlens, s => s == 0);

        for (var r = 0; r < spec.Batch; r++)
        {
            var pages = (a.Seqlens[r] + spec.PageBlockSize - 1) / spec.PageBlockSize;
            for (var p = 0; p < a.MaxBlocksPerSequence; p++)
            {
                var block = a.BlockTable.Get(r, p);
                if (p >= pages)
                {
                    Assert.Equal(RandomInputs.UnusedBlockId, block);
                    continue;
                }
                for (var t = 0; t < spec.PageBlockSize; t++)
                {
                    var value = TestTensors.ToDouble(a.KCache.Get(block, t, 0, 0));
                    var inUse = (p * spec.PageBlockSize) + t < a.Seqlens[r];
                    Assert.Equal(!inUse, double.IsNaN(value));
                    if (inUse)
                    {
                        Assert.InRange(value, -1.0, 1.0);
                    }
                }
            }
        }
    }

    [Fact]
    public void Table_IsFlashMlasWidth_UnlessTheSpecSaysOtherwise()
    {
        // The longest length rounded up to 256 tokens: 300 → 512 → 8 pages of 64.
        var flashMla = DecodeCase<Half>.Create(new DecodeCaseSpec { Batch = 2, SeqlenK = 300, Seed = 3 });
        Assert.Equal(8, flashMla.MaxBlocksPerSequence);
        Assert.Equal(16, flashMla.NumBlocks);
        Assert.Equal(ElementType.Float16, flashMla.Spec.ElementType);

        var tight = DecodeCase<Half>.Create(new DecodeCaseSpec { Batch = 2, SeqlenK = 300, SeqlenPadding = 1, ExtraTableColumns = 2, ExtraPoolBlocks = 5, Seed = 3 });
        Assert.Equal(5 + 2, tight.MaxBlocksPerSequence);
        Assert.Equal((2 * 7) + 5, tight.NumBlocks);
    }

    [Fact]
    public void Create_OfTheSpecsElementType()
    {
        var spec = new DecodeCaseSpec { Batch = 2, SeqlenK = 50, ElementType = ElementType.Float16, Seed = 4 };
        var any = DecodeCase.Create(spec);
        var half = Assert.IsType<DecodeCase<Half>>(any);
        Assert.Equal(Bits(DecodeCase<Half>.Create(spec).Q), Bits(half.Q));
        Assert.IsType<DecodeCase<BFloat16>>(DecodeCase.Create(spec with { ElementType = ElementType.BFloat16 }));
        Assert.Equal("b=2 s_q=1 h_q=16 h_kv=1 s_k=50 page=64 fp16 seed=4", any.Spec.ToString());
    }

    private static ushort[] Bits<T>(HostTensor<T> tensor)
        where T : unmanaged =>
        [.. MemoryMarshal.Cast<T, ushort>(tensor.Span)];
}
