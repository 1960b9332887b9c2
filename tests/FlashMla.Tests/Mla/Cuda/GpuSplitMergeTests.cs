using FlashMla.Cuda;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cuda;

/// <summary>
/// The merge of split requests inside the decode kernel (split_merge.cuh), on every kernel path:
/// one launch per decode, against the float64 reference and against the separate combine kernel,
/// bitwise deterministic, with the plan's merge counters back at zero after every decode, and
/// under graph replay.
/// </summary>
[Collection(GpuCollection.Name)]
public sealed class GpuSplitMergeTests(GpuFixture gpu)
{
    /// <summary>The decoders, by name: the default one and each path pinned.</summary>
    public static TheoryData<string> Decoders => ["default", "mma.sync", "wgmma", "mma.sync.compact"];

    /// <summary>Cases that cut requests into many pieces (one request over every SM, uneven lengths, h_kv &gt; 1, causal s_q = 2).</summary>
    private static DecodeCaseSpec[] Specs(string name) =>
    [
        new() { Batch = 1, QueryHeads = 16, SeqlenK = 8192, Seed = TestSeeds.Next(name + "/b1") },
        new() { Batch = 3, QueryHeads = 128, SeqlenK = 2000, Varlen = true, PageBlockSize = 64, Seed = TestSeeds.Next(name + "/b3") },
        new() { Batch = 2, QueryLength = 2, QueryHeads = 32, KvHeads = 2, SeqlenK = 3000, Causal = true, PageBlockSize = 16, Seed = TestSeeds.Next(name + "/hkv2") },
        new() { Batch = 5, QueryHeads = 64, SeqlenK = 700, Varlen = true, ZeroLengthRequests = 1, PageBlockSize = 64, ElementType = ElementType.Float16, Seed = TestSeeds.Next(name + "/fp16") },
    ];

    private CudaMlaDecoder Decoder(string which) => which switch
    {
        "mma.sync" => gpu.RequireMmaSyncDecoder(),
        "wgmma" => gpu.RequireWgmmaFirstDecoder(),
        "mma.sync.compact" => gpu.RequireCompactDecoder(),
        _ => gpu.RequireDecoder(),
    };

    [Theory]
    [MemberData(nameof(Decoders))]
    public void InKernelMerge_MatchesTheReference_AndTheCombineKernel_Deterministically(string which)
    {
        var decoder = Decoder(which);
        foreach (var spec in Specs($"{nameof(InKernelMerge_MatchesTheReference_AndTheCombineKernel_Deterministically)}/{which}"))
        {
            if (spec.ElementType == ElementType.Float16)
            {
                Run<Half>(decoder, spec);
            }
            else
            {
                Run<BFloat16>(decoder, spec);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void InKernelMerge_ReplaysInAGraph_BitForBit(string which)
    {
        var decoder = Decoder(which);
        var stream = gpu.RequireStream();
        var decodeCase = DecodeCase<BFloat16>.Create(new DecodeCaseSpec
        {
            Batch = 2, QueryHeads = 64, SeqlenK = 5000, Varlen = true, Seed = TestSeeds.Next($"{nameof(InKernelMerge_ReplaysInAGraph_BitForBit)}/{which}"),
        });
        var spec = decodeCase.Spec;
        using var device = DeviceCase<BFloat16>.Upload(decoder.Context, decodeCase, stream);
        using var plan = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, spec.PageBlockSize, stream);
        Assert.True(decoder.MergeInKernel);
        decoder.MergeInKernelAlways = true;

        // Three decodes per replay: each one's merge must leave the counters for the next.
        using var graph = CudaGraph.Capture(stream, () =>
        {
            for (var i = 0; i < 3; i++)
            {
                device.Decode(decoder, plan, stream, decodeCase.Options);
            }
        });
        using var exec = graph.Instantiate();
        decoder.MergeInKernelAlways = false;
        device.Poison(stream);
        exec.Launch(stream);
        decoder.Synchronize(stream, plan);
        var (first, firstLse) = device.Read(stream);
        Compare.AssertDecode(decodeCase, new HostTensor<BFloat16>(first, TensorLayout.Contiguous(decodeCase.OutputShape)), new HostTensor<float>(firstLse, TensorLayout.Contiguous(decodeCase.LseShape)), Tolerance.Output);
        for (var replay = 0; replay < 3; replay++)
        {
            device.Poison(stream);
            exec.Launch(stream);
            decoder.Synchronize(stream, plan);
            var (again, againLse) = device.Read(stream);
            Assert.Equal(first, again);
            Assert.Equal(firstLse, againLse);
        }

        AssertCountersZero(plan, stream);
    }

    [Fact]
    public void ThePlansGrid_FitsOnTheDeviceAtOnce_SoTheKernelMayMergeSplits()
    {
        var decoder = gpu.RequireDecoder();
        var shape = new MlaDecodeShape(1, 1, 16, 1, 576, 512, 512, 64, 512);
        var problem = new MlaDecodeProblem(shape, ElementType.BFloat16, KvCacheFormat.Dense(ElementType.BFloat16), ElementType.BFloat16);
        var info = decoder.DescribeKernel(problem);
        Assert.True(info.Grid.Volume <= (ulong)decoder.Context.Device.MultiprocessorCount, $"{info}: the plan's grid fits on the device at once");
    }

    private void Run<T>(CudaMlaDecoder decoder, DecodeCaseSpec spec)
        where T : unmanaged
    {
        var stream = gpu.RequireStream();
        var decodeCase = DecodeCase<T>.Create(spec);
        using var device = DeviceCase<T>.Upload(decoder.Context, decodeCase, stream);
        using var plan = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, spec.PageBlockSize, stream);
        var (_, numSplits) = plan.ReadSchedule(stream);
        var maxSplits = Enumerable.Range(0, spec.Batch).Max(i => numSplits[i + 1] - numSplits[i]);
        Assert.True(maxSplits >= 2, $"{decodeCase.Description}: the case splits a request ({maxSplits} pieces at most)");

        (T[] Output, float[] Lse) Once(bool inKernel)
        {
            var (saved, savedAlways) = (decoder.MergeInKernel, decoder.MergeInKernelAlways);
            decoder.MergeInKernel = inKernel;
            decoder.MergeInKernelAlways = inKernel;
            try
            {
                device.Poison(stream);
                device.Decode(decoder, plan, stream, decodeCase.Options);
                decoder.Synchronize(stream, plan);
                return device.Read(stream);
            }
            finally
            {
                (decoder.MergeInKernel, decoder.MergeInKernelAlways) = (saved, savedAlways);
            }
        }

        var fused = Once(inKernel: true);
        AssertCountersZero(plan, stream);
        var tolerance = Tolerance.Output;
        Compare.AssertDecode(decodeCase, new HostTensor<T>(fused.Output, TensorLayout.Contiguous(decodeCase.OutputShape)), new HostTensor<float>(fused.Lse, TensorLayout.Contiguous(decodeCase.LseShape)), tolerance);

        var again = Once(inKernel: true);
        Assert.Equal(fused.Output, again.Output);
        Assert.Equal(fused.Lse, again.Lse);

        var combined = Once(inKernel: false);
        Compare.AssertDecode(decodeCase, new HostTensor<T>(combined.Output, TensorLayout.Contiguous(decodeCase.OutputShape)), new HostTensor<float>(combined.Lse, TensorLayout.Contiguous(decodeCase.LseShape)), tolerance);
        for (var i = 0; i < fused.Lse.Length; i++)
        {
            var (a, b) = (fused.Lse[i], combined.Lse[i]);
            Assert.True(a == b || Math.Abs(a - b) <= 1e-4f * Math.Max(1f, Math.Abs(a)), $"{decodeCase.Description}: lse[{i}] = {a} merged in the kernel, {b} by the combine kernel");
        }

        AssertCountersZero(plan, stream);
    }

    private static void AssertCountersZero(CudaDecodePlan plan, CudaStream stream)
    {
        var counters = new MergeCounters[plan.Merge.Length];
        plan.Merge.CopyTo(counters, stream);
        Assert.All(counters, c => Assert.True(c.Arrived == 0 && c.Departed == 0, $"merge counters left at ({c.Arrived}, {c.Departed})"));
    }
}
