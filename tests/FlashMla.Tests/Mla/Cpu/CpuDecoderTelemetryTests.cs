using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;
using Microsoft.Extensions.Logging;

namespace FlashMla.Tests.Mla.Cpu;

/// <summary>The CPU decoder's logging (rejected inputs) and metrics (decode calls, input errors).</summary>
[Collection(MetricsCollection.Name)]
public sealed class CpuDecoderTelemetryTests
{
    private static DecodeCase<BFloat16> SmallCase(string name, int batch = 2) => DecodeCase<BFloat16>.Create(new DecodeCaseSpec
    {
        Batch = batch,
        QueryHeads = 16,
        SeqlenK = 200,
        Varlen = true,
        Seed = TestSeeds.Next(name),
    });

    [Fact]
    public void Decode_CountsOneCallTaggedCpu_AndLogsNothing()
    {
        var logger = new CollectingLogger();
        var decoder = new CpuMlaDecoder { Logger = logger };
        var c = SmallCase(nameof(Decode_CountsOneCallTaggedCpu_AndLogsNothing));
        var output = c.NewOutput();
        var lse = c.NewLse();
        using var meter = new MeterRecorder();

        decoder.Decode(c.Q, c.KCache, c.BlockTable, c.CacheSeqlens, output, lse, c.Options);

        var calls = meter.Of(MlaMetrics.DecodeCallsName);
        var call = Assert.Single(calls);
        Assert.Equal(1, call.Value);
        Assert.Equal(MlaMetrics.CpuBackend, call.Tag(MlaMetrics.BackendTag));
        Assert.Equal(MlaMetrics.CpuKernelPath, call.Tag(MlaMetrics.KernelPathTag));
        Assert.Empty(meter.Of(MlaMetrics.InputErrorsName));
        Assert.Empty(logger.Entries);
        Assert.All(TestTensors.ToDoubleArray(lse), v => Assert.False(double.IsNaN(v)));
    }

    [Fact]
    public void Decode_WithPlan_CountsEachLayer()
    {
        var decoder = new CpuMlaDecoder();
        var c = SmallCase(nameof(Decode_WithPlan_CountsEachLayer), batch: 3);
        var plan = decoder.CreatePlan(c.Spec.Batch, c.Spec.QueryLength, c.Spec.QueryHeads, c.Spec.KvHeads);
        decoder.UpdatePlan(plan, c.CacheSeqlens, c.MaxBlocksPerSequence, c.Spec.PageBlockSize);
        using var meter = new MeterRecorder();

        var layers = Random.Shared.Next(2, 5);
        for (var layer = 0; layer < layers; layer++)
        {
            decoder.Decode(c.Q, c.KCache, c.BlockTable, c.CacheSeqlens, plan, c.NewOutput(), c.NewLse(), c.Options);
        }

        Assert.Equal(layers, meter.Of(MlaMetrics.DecodeCallsName).Sum(m => m.Value));
    }

    [Fact]
    public void Decode_BadLse_IsLoggedAndCountedWithItsParameter_AndNotCountedAsACall()
    {
        var logger = new CollectingLogger();
        var decoder = new CpuMlaDecoder { Logger = logger };
        var c = SmallCase(nameof(Decode_BadLse_IsLoggedAndCountedWithItsParameter_AndNotCountedAsACall));
        var badLse = HostTensor<float>.Create(c.Spec.Batch, c.Spec.QueryHeads, c.Spec.QueryLength + 1);
        using var meter = new MeterRecorder();

        var ex = Assert.ThrowsAny<ArgumentException>(() => decoder.Decode(c.Q, c.KCache, c.BlockTable, c.CacheSeqlens, c.NewOutput(), badLse, c.Options));

        Assert.Equal("lse", ex.ParamName);
        var entry = Assert.Single(logger.Entries);
        Assert.Equal(LogLevel.Warning, entry.Level);
        Assert.Equal(302, entry.EventId.Id);
        Assert.Equal("lse", entry.State["Parameter"]);
        Assert.Equal(MlaMetrics.CpuBackend, entry.State["Backend"]);
        Assert.Contains(ex.Message, entry.Message, StringComparison.Ordinal);

        var error = Assert.Single(meter.Of(MlaMetrics.InputErrorsName));
        Assert.Equal(1, error.Value);
        Assert.Equal(MlaMetrics.CpuBackend, error.Tag(MlaMetrics.BackendTag));
        Assert.Equal("lse", error.Tag(MlaMetrics.ParameterTag));
        Assert.Equal(ex.GetType().Name, error.Tag(MlaMetrics.ErrorTypeTag));
        Assert.Empty(meter.Of(MlaMetrics.DecodeCallsName));
    }

    [Fact]
    public void CreatePlanAndUpdatePlan_Rejections_AreCountedOncePerCall()
    {
        var logger = new CollectingLogger();
        var decoder = new CpuMlaDecoder { Logger = logger };
        using var meter = new MeterRecorder();

        var badBatch = -Random.Shared.Next(0, 100);
        var planError = Assert.ThrowsAny<ArgumentException>(() => decoder.CreatePlan(badBatch, 1, 16, 1));
        var plan = decoder.CreatePlan(2, 1, 16, 1);
        var seqlens = new HostTensor<int>(new[] { 10, 64 * 4 + 1 }, TensorLayout.Contiguous(2));
        var updateError = Assert.ThrowsAny<ArgumentException>(() => decoder.UpdatePlan(plan, seqlens, maxBlocksPerSequence: 4, pageBlockSize: 64));

        var errors = meter.Of(MlaMetrics.InputErrorsName);
        Assert.Equal(2, errors.Count);
        Assert.Equal(planError.ParamName, errors[0].Tag(MlaMetrics.ParameterTag));
        Assert.Equal(updateError.ParamName, errors[1].Tag(MlaMetrics.ParameterTag));
        Assert.Equal([planError.ParamName, updateError.ParamName], logger.WithEvent(302).Select(e => e.State["Parameter"]));
    }

    [Fact]
    public void Meter_IsNamedForTheLibrary_AndPublishesBothCounters()
    {
        var published = new List<(string Meter, string Instrument, string? Unit)>();
        using var listener = new System.Diagnostics.Metrics.MeterListener
        {
            InstrumentPublished = (instrument, _) => published.Add((instrument.Meter.Name, instrument.Name, instrument.Unit)),
        };
        // A rejected call creates the meter if no test has yet; Start then publishes its instruments.
        Assert.ThrowsAny<ArgumentException>(() => new CpuMlaDecoder().CreatePlan(1, 1, 16, 3));
        listener.Start();

        Assert.Equal("FlashMla", MlaMetrics.MeterName);
        Assert.Contains(("FlashMla", MlaMetrics.DecodeCallsName, "{call}"), published);
        Assert.Contains(("FlashMla", MlaMetrics.InputErrorsName, "{error}"), published);
    }
}
