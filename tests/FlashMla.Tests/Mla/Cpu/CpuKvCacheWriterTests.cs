using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cpu;

/// <summary>
/// The CPU KV cache writer against the element-by-element reference (<see cref="KvCacheAppendReference"/>),
/// once per element type: the whole memory of a NaN-poisoned cache must equal the reference's bit
/// for bit, so the addressed rows hold the new values and nothing else changed.
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
public abstract class CpuKvCacheWriterTests<T>
    where T : unmanaged
{
    private readonly CpuKvCacheWriter _writer = new();

    public static TheoryData<int, int, int, int, int, bool, int> Cases => new()
    {
        // n, num_blocks, page, h_kv, d, padded, padding tokens
        { 1, 1, 1, 1, 576, false, 0 },
        { 7, 3, 64, 1, 576, false, 2 },
        { 40, 5, 16, 1, 576, true, 5 },
        { 13, 4, 8, 2, 576, false, 3 },
        { 9, 3, 5, 3, 576, true, 1 },
        { 20, 2, 64, 1, 512, false, 4 },
        { 6, 2, 4, 2, 512, true, 0 },
        { 0, 2, 4, 1, 576, false, 0 },
        { 12, 3, 4, 1, 576, false, 12 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Latent_WritesExactlyTheAddressedRows(int n, int numBlocks, int page, int kvHeads, int headDim, bool padded, int paddingTokens)
    {
        var c = KvAppendCase<T>.Create(n, numBlocks, page, kvHeads, headDim, padded, paddingTokens, TestSeeds.Next());
        var expected = KvCacheAppendReference.Latent(c.Latent, c.Slots, c.KCache);
        _writer.Append(c.Latent, c.SlotMapping, c.KCache);
        KvAppendCase<T>.AssertBitwiseEqual(expected, c.KCache.Span, c.Description);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Split_ConcatenatesCompressedKvAndRope(int n, int numBlocks, int page, int kvHeads, int headDim, bool padded, int paddingTokens)
    {
        if (headDim != KvCacheAppendValidation.LatentDim)
        {
            return; // the split form needs a 576-wide cache (RequireSplitForm's test)
        }

        var c = KvAppendCase<T>.Create(n, numBlocks, page, kvHeads, headDim, padded, paddingTokens, TestSeeds.Next());
        var expected = KvCacheAppendReference.Split(c.CompressedKv, c.Rope, c.Slots, c.KCache);
        _writer.Append(c.CompressedKv, c.Rope, c.SlotMapping, c.KCache);
        KvAppendCase<T>.AssertBitwiseEqual(expected, c.KCache.Span, c.Description);
    }

    [Fact]
    public void Latent_WithAHeadAxisOfOne_IsAccepted()
    {
        var c = KvAppendCase<T>.Create(5, 2, 4, 1, 576, false, 1, TestSeeds.Next(), headAxis: true);
        var expected = KvCacheAppendReference.Latent(c.Latent, c.Slots, c.KCache);
        _writer.Append(c.Latent, c.SlotMapping, c.KCache);
        KvAppendCase<T>.AssertBitwiseEqual(expected, c.KCache.Span, c.Description);
    }

    [Fact]
    public void AppendedTokens_AreWhatTheDecodeReads()
    {
        // One request of 3 tokens on pages [1, 0] of size 2: slots 2, 3, 0; the decode over the
        // appended cache equals the reference over the same rows.
        var c = KvAppendCase<T>.Create(3, 2, 2, 1, 576, false, 0, TestSeeds.Next());
        var slotMapping = new HostTensor<int>(new[] { 2, 3, 0 }, TensorLayout.Contiguous(3));
        _writer.Append(c.Latent, slotMapping, c.KCache);
        var blockTable = new HostTensor<int>(new[] { 1, 0 }, TensorLayout.Contiguous(1, 2));
        var seqlens = new HostTensor<int>(new[] { 3 }, TensorLayout.Contiguous(1));
        var q = HostTensor<T>.Create(1, 1, 16, 576);
        var rng = new Gaussian(TestSeeds.Next());
        RandomInputs.Fill<T>(q.Span, rng);
        var output = HostTensor<T>.Create(1, 1, 16, 512);
        var lse = HostTensor<float>.Create(1, 16, 1);
        new CpuMlaDecoder().Decode(q, c.KCache, blockTable, seqlens, output, lse, new MlaDecodeOptions());

        // Attention over the three appended rows in token order, in float64.
        var latent = c.Latent.Span.ToArray();
        var scale = 1.0 / Math.Sqrt(576);
        for (var h = 0; h < 16; h++)
        {
            var scores = new double[3];
            for (var t = 0; t < 3; t++)
            {
                for (var d = 0; d < 576; d++)
                {
                    scores[t] += TestTensors.ToDouble(q.Span[(h * 576) + d]) * TestTensors.ToDouble(latent[(t * 576) + d]);
                }

                scores[t] *= scale;
            }

            var max = scores.Max();
            var weights = scores.Select(s => Math.Exp(s - max)).ToArray();
            var sum = weights.Sum();
            Assert.Equal(max + Math.Log(sum), lse.Span[h], 1e-4);
            for (var d = 0; d < 512; d += 37)
            {
                var expected = Enumerable.Range(0, 3).Sum(t => weights[t] * TestTensors.ToDouble(latent[(t * 576) + d])) / sum;
                Assert.Equal(expected, TestTensors.ToDouble(output.Span[(h * 512) + d]), 1e-2);
            }
        }
    }

    [Theory]
    [InlineData(8)]      // = num_blocks · page
    [InlineData(1000)]
    [InlineData(-2)]
    [InlineData(int.MinValue)]
    public void SlotOutsideTheCache_RaisesNamingTokenAndSlot_AndWritesNothing(int badSlot)
    {
        var c = KvAppendCase<T>.Create(6, 2, 4, 1, 576, false, 1, TestSeeds.Next());
        var slots = c.Slots.ToArray();
        slots[4] = badSlot;
        var before = c.KCache.Span.ToArray();
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => _writer.Append(c.Latent, KvAppendCase<T>.SlotTensor(slots, false), c.KCache));
        Assert.Equal("slotMapping", ex.ParamName);
        Assert.Contains($"slotMapping[4] = {badSlot}", ex.Message, StringComparison.Ordinal);
        Assert.Contains("[0, 8)", ex.Message, StringComparison.Ordinal);
        KvAppendCase<T>.AssertBitwiseEqual(before, c.KCache.Span, "cache after a rejected append");

        ex = Assert.Throws<ArgumentOutOfRangeException>(() => _writer.Append(c.CompressedKv, c.Rope, KvAppendCase<T>.SlotTensor(slots, true), c.KCache));
        Assert.Equal("slotMapping", ex.ParamName);
        KvAppendCase<T>.AssertBitwiseEqual(before, c.KCache.Span, "cache after a rejected split append");
    }

    [Fact]
    public void RepeatedSlot_Raises_AndWritesNothing()
    {
        var c = KvAppendCase<T>.Create(5, 2, 4, 1, 576, false, 0, TestSeeds.Next());
        var slots = c.Slots.ToArray();
        slots[3] = slots[1];
        var before = c.KCache.Span.ToArray();
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => _writer.Append(c.Latent, KvAppendCase<T>.SlotTensor(slots, false), c.KCache));
        Assert.Equal("slotMapping", ex.ParamName);
        Assert.Contains("slotMapping[3]", ex.Message, StringComparison.Ordinal);
        KvAppendCase<T>.AssertBitwiseEqual(before, c.KCache.Span, "cache after a rejected append");
    }

    [Fact]
    public void BadLayouts_NameTheParameter()
    {
        var c = KvAppendCase<T>.Create(4, 2, 4, 1, 576, false, 0, TestSeeds.Next());
        var two = KvAppendCase<T>.Create(4, 2, 4, 2, 576, false, 0, TestSeeds.Next());
        var narrow = KvAppendCase<T>.Create(4, 2, 4, 1, 512, false, 0, TestSeeds.Next());
        void Expect(string param, Action call) => Assert.Equal(param, Assert.ThrowsAny<ArgumentException>(call).ParamName);

        // latent: wrong width, wrong n, no head axis for h_kv = 2, strided rows.
        Expect("latent", () => _writer.Append(narrow.Latent, c.SlotMapping, c.KCache));
        Expect("latent", () => _writer.Append(c.Latent, KvAppendCase<T>.SlotTensor([0, 1, 2], false), c.KCache));
        Expect("latent", () => _writer.Append(c.Latent, two.SlotMapping, two.KCache));
        var stridedRows = new HostTensor<T>(new T[4 * 576 * 2], new TensorLayout([4, 576], [1152, 2]));
        Expect("latent", () => _writer.Append(stridedRows, c.SlotMapping, c.KCache));

        // the split form: widths, and a cache that is not 576 wide.
        Expect("compressedKv", () => _writer.Append(c.Rope, c.Rope, c.SlotMapping, c.KCache));
        Expect("rope", () => _writer.Append(c.CompressedKv, c.CompressedKv, c.SlotMapping, c.KCache));
        Expect("kCache", () => _writer.Append(narrow.CompressedKv, narrow.CompressedKv, narrow.SlotMapping, narrow.KCache));

        // kCache: rank, head dim, strided last dimension, too many slots.
        Expect("kCache", () => _writer.Append(c.Latent, c.SlotMapping, HostTensor<T>.Create(8, 1, 576)));
        Expect("kCache", () => _writer.Append(c.Latent, c.SlotMapping, HostTensor<T>.Create(2, 4, 1, 256)));
        var stridedCache = new HostTensor<T>(new T[8 * 576 * 2], new TensorLayout([2, 4, 1, 576], [4 * 1152, 1152, 1152, 2]));
        Expect("kCache", () => _writer.Append(c.Latent, c.SlotMapping, stridedCache));
        var huge = new HostTensor<T>(new T[576], new TensorLayout([1 << 20, 1 << 12, 1, 576], [0, 0, 0, 1]));
        Expect("kCache", () => _writer.Append(c.Latent, c.SlotMapping, huge));

        // slotMapping: rank.
        Expect("slotMapping", () => _writer.Append(c.Latent, new HostTensor<int>(new int[4], TensorLayout.Contiguous(2, 2)), c.KCache));
    }

    [Fact]
    public void UnsupportedElementType_NamesTheCache()
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            _writer.Append(HostTensor<float>.Create(1, 576), new HostTensor<int>(new[] { 0 }, TensorLayout.Contiguous(1)), HostTensor<float>.Create(1, 1, 1, 576)));
        Assert.Equal("kCache", ex.ParamName);
    }
}

public sealed class CpuKvCacheWriterTests_BFloat16 : CpuKvCacheWriterTests<BFloat16>;

public sealed class CpuKvCacheWriterTests_Half : CpuKvCacheWriterTests<Half>;
