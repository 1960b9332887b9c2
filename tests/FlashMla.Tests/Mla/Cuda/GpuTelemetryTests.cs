using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;
using Microsoft.Extensions.Logging;

namespace FlashMla.Tests.Mla.Cuda;

/// <summary>
/// The CUDA side's logging and metrics on a device: module loads with their JIT time, the kernel
/// path chosen once per problem shape, rejected inputs, the decode and input-error counters, and the
/// kernel override's opt-in. Each test makes its own context with a collecting logger, so its
/// kernel library is fresh. The GPU collection runs alone, so the process-wide meter and the
/// environment are the tests' own.
/// </summary>
[Collection(GpuCollection.Name)]
public sealed class GpuTelemetryTests(GpuFixture gpu)
{
    private static DecodeCase<BFloat16> Case(string name, int batch) => DecodeCase<BFloat16>.Create(new DecodeCaseSpec
    {
        Batch = batch,
        QueryLength = 1,
        QueryHeads = 16,
        KvHeads = 1,
        SeqlenK = 150,
        Varlen = true,
        PageBlockSize = 64,
        Seed = TestSeeds.Next(name),
    });

    private CudaContext NewContext(ILogger logger)
    {
        _ = gpu.RequireDecoder(); // skips where the decode kernels cannot run
        return new CudaContext(gpu.RequireContext().Device, logger);
    }

    private static void DecodeHost(CudaMlaDecoder decoder, DecodeCase<BFloat16> c) =>
        decoder.DecodeHost(c.Q, c.KCache, c.BlockTable, c.CacheSeqlens, c.NewOutput(), c.NewLse(), c.Options);

    [Fact]
    public void Decoder_LogsEveryModuleLoad_WithItsSourceAndJitTime()
    {
        var logger = new CollectingLogger();
        using var context = NewContext(logger);
        using var decoder = new CudaMlaDecoder(context);

        var loads = logger.WithEvent(200);
        Assert.NotEmpty(loads);
        Assert.All(loads, e => Assert.Equal(LogLevel.Information, e.Level));
        var modules = loads.Select(e => (string)e.State["Module"]!).ToList();
        Assert.Contains("decode_schedule", modules);
        Assert.Contains("decode_combine", modules);
        Assert.Equal(modules.Count, modules.Distinct().Count());
        Assert.All(loads, e => Assert.True((double)e.State["ElapsedMs"]! >= 0, e.Message));
        Assert.All(loads, e => Assert.StartsWith("embedded resource ", (string)e.State["Source"]!, StringComparison.Ordinal));
    }

    [Fact]
    public void KernelPathChoice_IsLoggedOncePerProblemShape()
    {
        var logger = new CollectingLogger();
        using var context = NewContext(logger);
        using var decoder = new CudaMlaDecoder(context);
        var first = Case(nameof(KernelPathChoice_IsLoggedOncePerProblemShape), batch: 2);
        var second = Case(nameof(KernelPathChoice_IsLoggedOncePerProblemShape) + "/b3", batch: 3);

        DecodeHost(decoder, first);
        DecodeHost(decoder, first);
        DecodeHost(decoder, second);
        DecodeHost(decoder, first);

        var choices = logger.WithEvent(300);
        Assert.Equal(2, choices.Count);
        Assert.All(choices, e => Assert.Equal(LogLevel.Debug, e.Level));
        Assert.Contains("b=2 ", (string)choices[0].State["Problem"]!, StringComparison.Ordinal);
        Assert.Contains("b=3 ", (string)choices[1].State["Problem"]!, StringComparison.Ordinal);
        var path = decoder.DescribeKernel(CudaMlaDecoderProblem(first, decoder)).Path;
        Assert.All(choices, e => Assert.Equal(path, e.State["KernelPath"]));
    }

    [Fact]
    public void KernelPathChoice_IsNotTrackedWhenDebugIsOff()
    {
        var logger = new CollectingLogger(LogLevel.Information);
        using var context = NewContext(logger);
        using var decoder = new CudaMlaDecoder(context);

        DecodeHost(decoder, Case(nameof(KernelPathChoice_IsNotTrackedWhenDebugIsOff), batch: 2));

        Assert.Empty(logger.WithEvent(300));
        Assert.NotEmpty(logger.WithEvent(200));
    }

    [Fact]
    public void Decodes_AreCountedWithBackendAndKernelPath_AndInputErrorsWithTheirParameter()
    {
        var logger = new CollectingLogger();
        using var context = NewContext(logger);
        using var decoder = new CudaMlaDecoder(context);
        var c = Case(nameof(Decodes_AreCountedWithBackendAndKernelPath_AndInputErrorsWithTheirParameter), batch: 2);
        var path = decoder.DescribeKernel(CudaMlaDecoderProblem(c, decoder)).Path;
        using var meter = new MeterRecorder();

        var calls = Random.Shared.Next(1, 4);
        for (var i = 0; i < calls; i++)
        {
            DecodeHost(decoder, c);
        }

        var badLse = HostTensor<float>.Create(c.Spec.Batch, c.Spec.QueryHeads + 1, c.Spec.QueryLength);
        var ex = Assert.ThrowsAny<ArgumentException>(() => decoder.DecodeHost(c.Q, c.KCache, c.BlockTable, c.CacheSeqlens, c.NewOutput(), badLse, c.Options));

        var decodes = meter.Of(MlaMetrics.DecodeCallsName);
        Assert.Equal(calls, decodes.Sum(m => m.Value));
        Assert.All(decodes, m => Assert.Equal(MlaMetrics.CudaBackend, m.Tag(MlaMetrics.BackendTag)));
        Assert.All(decodes, m => Assert.Equal(path, m.Tag(MlaMetrics.KernelPathTag)));
        var error = Assert.Single(meter.Of(MlaMetrics.InputErrorsName));
        Assert.Equal(MlaMetrics.CudaBackend, error.Tag(MlaMetrics.BackendTag));
        Assert.Equal(ex.ParamName, error.Tag(MlaMetrics.ParameterTag));
        var warning = Assert.Single(logger.WithEvent(302));
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Equal(ex.ParamName, warning.State["Parameter"]);
    }

    [Fact]
    public void DeviceFoundInputError_IsLoggedAndCountedAtTheSynchronizationPoint()
    {
        var logger = new CollectingLogger();
        using var context = NewContext(logger);
        using var decoder = new CudaMlaDecoder(context);
        using var stream = CudaStream.Create(context);
        var c = Case(nameof(DeviceFoundInputError_IsLoggedAndCountedAtTheSynchronizationPoint), batch: 2);
        using var q = DeviceBuffer<BFloat16>.Allocate(context, c.Q.Span.Length);
        using var k = DeviceBuffer<BFloat16>.Allocate(context, c.KCache.Span.Length);
        using var table = DeviceBuffer<int>.Allocate(context, c.BlockTable.Span.Length);
        using var seqlens = DeviceBuffer<int>.Allocate(context, c.Spec.Batch);
        using var output = DeviceBuffer<BFloat16>.Allocate(context, c.Spec.Batch * c.Spec.QueryLength * c.Spec.QueryHeads * DecodeCaseSpec.HeadDimV);
        using var lse = DeviceBuffer<float>.Allocate(context, c.Spec.Batch * c.Spec.QueryHeads * c.Spec.QueryLength);
        q.CopyFrom(c.Q.Span);
        k.CopyFrom(c.KCache.Span);
        table.CopyFrom(c.BlockTable.Span);
        var capacity = c.MaxBlocksPerSequence * c.Spec.PageBlockSize;
        int[] lengths = [10, capacity + 1 + Random.Shared.Next(100)]; // request 1 is out of range
        seqlens.CopyFrom(lengths);
        using var plan = decoder.CreatePlan(c.Spec.Batch, c.Spec.QueryLength, c.Spec.QueryHeads, c.Spec.KvHeads);
        var seqlensTensor = seqlens.AsTensor(c.Spec.Batch);
        decoder.UpdatePlan(plan, seqlensTensor, c.MaxBlocksPerSequence, c.Spec.PageBlockSize, stream);
        using var meter = new MeterRecorder();

        decoder.Decode(
            q.AsTensor(c.QShape), k.AsTensor(c.KShape), table.AsTensor(c.BlockTableShape), seqlensTensor, plan,
            output.AsTensor(c.OutputShape), lse.AsTensor(c.LseShape), stream, c.Options);
        var ex = Assert.Throws<MlaInputException>(() => decoder.Synchronize(stream, plan));

        Assert.Equal(1, ex.RequestIndex);
        var error = Assert.Single(meter.Of(MlaMetrics.InputErrorsName));
        Assert.Equal("cacheSeqlens", error.Tag(MlaMetrics.ParameterTag));
        Assert.Equal(nameof(MlaInputException), error.Tag(MlaMetrics.ErrorTypeTag));
        var warning = Assert.Single(logger.WithEvent(303));
        Assert.Equal(1, warning.State["RequestIndex"]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void PtxOverride_IsHonouredOnlyWithTheOptIn_AndLogged(bool allow)
    {
        var logger = new CollectingLogger();
        _ = gpu.RequireContext();
        var target = KernelLibrary.SelectTarget(gpu.RequireContext().Device.ComputeCapability);
        var folder = Directory.CreateTempSubdirectory("flashmla-ptx-");
        var previousDir = Environment.GetEnvironmentVariable(KernelLibrary.PtxDirectoryEnvironmentVariable);
        var previousAllow = Environment.GetEnvironmentVariable(KernelLibrary.AllowPtxOverrideEnvironmentVariable);
        try
        {
            Directory.CreateDirectory(Path.Combine(folder.FullName, target));
            var path = Path.Combine(folder.FullName, target, DeviceFill.ModuleName + ".ptx");
            File.WriteAllText(path, KernelLibrary.ReadPtx(target, DeviceFill.ModuleName)!);
            Environment.SetEnvironmentVariable(KernelLibrary.PtxDirectoryEnvironmentVariable, folder.FullName);
            Environment.SetEnvironmentVariable(KernelLibrary.AllowPtxOverrideEnvironmentVariable, allow ? "1" : null);

            using var context = new CudaContext(gpu.RequireContext().Device, logger);
            _ = context.Kernels.GetModule(DeviceFill.ModuleName);

            var load = Assert.Single(logger.WithEvent(200));
            if (allow)
            {
                Assert.Equal(folder.FullName, context.Kernels.PtxOverrideDirectory);
                Assert.Single(logger.WithEvent(202));
                Assert.Single(logger.WithEvent(204));
                Assert.Equal(path, load.State["Source"]);
            }
            else
            {
                Assert.Null(context.Kernels.PtxOverrideDirectory);
                Assert.Single(logger.WithEvent(203));
                Assert.Empty(logger.WithEvent(204));
                Assert.StartsWith("embedded resource ", (string)load.State["Source"]!, StringComparison.Ordinal);
            }
        }
        finally
        {
            Environment.SetEnvironmentVariable(KernelLibrary.PtxDirectoryEnvironmentVariable, previousDir);
            Environment.SetEnvironmentVariable(KernelLibrary.AllowPtxOverrideEnvironmentVariable, previousAllow);
            folder.Delete(recursive: true);
        }
    }

    private static MlaDecodeProblem CudaMlaDecoderProblem(DecodeCase<BFloat16> c, CudaMlaDecoder decoder)
    {
        _ = decoder;
        var shape = new MlaDecodeShape(c.Spec.Batch, c.Spec.QueryLength, c.Spec.QueryHeads, c.Spec.KvHeads, c.Spec.HeadDim, DecodeCaseSpec.HeadDimV, c.NumBlocks, c.Spec.PageBlockSize, c.MaxBlocksPerSequence);
        return new MlaDecodeProblem(shape, ElementType.BFloat16, KvCacheFormat.Dense(ElementType.BFloat16, c.Spec.HeadDim), ElementType.BFloat16);
    }
}
