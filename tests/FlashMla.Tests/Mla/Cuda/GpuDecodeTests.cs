using System.Globalization;
using System.Runtime.InteropServices;
using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Mla.Cuda;
using FlashMla.Mla;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla.Cuda;

/// <summary>
/// The CUDA decoder against the float64 reference, once per element type (the concrete classes at
/// the end pick the type). Skipped with the reason where there is no CUDA device, or while the
/// decode kernels' PTX is not built. <c>FLASHMLA_GPU_TESTS=quick</c> runs a slice of the grid and
/// no large case.
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
[Collection(GpuCollection.Name)]
public abstract class GpuDecodeTests<T>(GpuFixture gpu)
    where T : unmanaged
{
    /// <summary>The large cases: (b, s_k, s_q, causal); each element type runs half of them.</summary>
    private static readonly (int Batch, int SeqlenK, int QueryLength, bool Causal)[] LargeCases =
    [
        (64, 4096, 2, true),
        (128, 4096, 1, false),
        (64, 16384, 1, false),
        (128, 16384, 1, false),
    ];

    /// <summary>
    /// FlashMLA's output tolerance. Its tests use the same bound for bf16 and fp16; the GPU kernels
    /// round P to the input type before the PV product, so fp16 is held to the bf16 bound too.
    /// </summary>
    protected static Tolerance OutputTolerance => Tolerance.ForOutput(ElementTypes.Of<T>(nameof(T)), roundsProbabilities: true);

    /// <summary>Which half of <see cref="LargeCases"/> this element type runs (0 or 1; -1: none).</summary>
    protected abstract int LargeCaseParity { get; }

    /// <summary>
    /// The decoder under test: by default one pinned to the wgmma path first (on sm_90a it takes
    /// every call it can compute, however small the grid's cases are; the library's own decoder
    /// would leave small calls to mma.sync), or one restricted to mma.sync.
    /// </summary>
    /// <returns>The decoder (skips the test without a usable GPU).</returns>
    protected virtual CudaMlaDecoder Decoder() => gpu.RequireWgmmaFirstDecoder();

    public static IEnumerable<TheoryDataRow<int, int, int, int, int, bool, bool, int>> PairwiseCases =>
        DecoderGrid.PairwiseCases
            .Where((_, i) => !GpuFixture.Quick || i % 6 == 0)
            .Select(c => new TheoryDataRow<int, int, int, int, int, bool, bool, int>(
                c.Batch, c.QueryLength, c.SeqlenK, c.QueryHeads, c.KvHeads, c.Varlen, c.Causal, c.PageBlockSize));

    public static TheoryData<int, int, int, int, int, bool, bool> PageSize128Cases => new()
    {
        // b, s_q, s_k, h_q, h_kv, varlen, causal (page size 128, which the CPU grid does not use)
        { 1, 1, 1000, 16, 1, false, false },
        { 2, 2, 140, 64, 8, true, true },
        { 6, 4, 20, 9, 1, true, true },
        { 2, 1, 129, 128, 2, false, false },
    };

    public static TheoryData<int> LargeCaseIndices => new(Enumerable.Range(0, LargeCases.Length));

    [Theory]
    [MemberData(nameof(PairwiseCases))]
    public void Pairwise_MatchesReference(int batch, int queryLength, int seqlenK, int queryHeads, int kvHeads, bool varlen, bool causal, int pageBlockSize)
    {
        var decoder = Decoder();
        var gridCase = new GridCase(batch, queryLength, seqlenK, queryHeads, kvHeads, varlen, causal, pageBlockSize);
        RunHostAndCheck(decoder, gridCase.ToSpec(TestSeeds.Next($"GpuPairwise/{gridCase}/{TestTensors.DTypeName<T>()}")));
    }

    [Theory]
    [MemberData(nameof(PageSize128Cases))]
    public void PageSize128_MatchesReference(int batch, int queryLength, int seqlenK, int queryHeads, int kvHeads, bool varlen, bool causal)
    {
        var decoder = Decoder();
        var gridCase = new GridCase(batch, queryLength, seqlenK, queryHeads, kvHeads, varlen, causal, 128);
        RunHostAndCheck(decoder, gridCase.ToSpec(TestSeeds.Next($"GpuPage128/{gridCase}/{TestTensors.DTypeName<T>()}")));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void NonContiguousLayouts_MatchReference(bool causal)
    {
        var decoder = Decoder();
        RunHostAndCheck(decoder, new DecodeCaseSpec
        {
            Batch = 3,
            QueryLength = 2,
            QueryHeads = 32,
            KvHeads = 2,
            SeqlenK = 300,
            Varlen = true,
            Causal = causal,
            PageBlockSize = 16,
            NonContiguous = true,
            SoftmaxScale = 0.07f,
            Seed = TestSeeds.Next(Name()),
        });
    }

    [Fact]
    public void HeadDim512_MatchesReference()
    {
        var decoder = Decoder();
        RunHostAndCheck(decoder, new DecodeCaseSpec
        {
            Batch = 2,
            QueryLength = 1,
            QueryHeads = 16,
            KvHeads = 1,
            HeadDim = 512,
            SeqlenK = 500,
            PageBlockSize = 64,
            Seed = TestSeeds.Next(Name()),
        });
    }

    /// <summary>
    /// With sm_80's shared-memory limit the decoder falls back to the one-stage 64-row kernel for
    /// every row count; run it here against the reference.
    /// </summary>
    [Theory]
    [InlineData(2, 1, 300, 16, 1, false, 64)]
    [InlineData(3, 2, 1000, 32, 2, true, 16)]
    [InlineData(2, 4, 140, 128, 8, true, 1)]
    [InlineData(1, 2, 777, 128, 1, true, 64)]
    public void SharedMemoryLimitOfSm80_OneStageKernel_MatchesReference(
        int batch, int queryLength, int seqlenK, int queryHeads, int kvHeads, bool causal, int pageBlockSize)
    {
        const int Sm80OptinLimit = 166_912;
        _ = Decoder();
        using var decoder = new CudaMlaDecoder(gpu.RequireContext(), Sm80OptinLimit);
        var dtype = TestTensors.DTypeName<T>();
        var type = ElementTypes.Of<T>("T");
        var shape = new MlaDecodeShape(batch, queryLength, queryHeads, kvHeads, 576, 512, 1, pageBlockSize, 1);
        Assert.Equal(1, decoder.DescribeKernel(new MlaDecodeProblem(shape, type, KvCacheFormat.Dense(type), type)).Stages);
        var gridCase = new GridCase(batch, queryLength, seqlenK, queryHeads, kvHeads, true, causal, pageBlockSize);
        RunHostAndCheck(decoder, gridCase.ToSpec(TestSeeds.Next($"GpuOneStage/{gridCase}/{dtype}")));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AllSequencesEmpty_GiveZeroOutputAndInfiniteLse(bool causal)
    {
        var decoder = Decoder();
        var (_, output, lse) = RunHostAndCheck(decoder, new DecodeCaseSpec
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
    }

    [Theory]
    [MemberData(nameof(LargeCaseIndices))]
    public void LargeBatch_WithZeroLengthRequests_MatchesReference(int index)
    {
        var decoder = Decoder();
        var (batch, seqlenK, queryLength, causal) = LargeCases[index];
        if (GpuFixture.Quick)
        {
            Assert.Skip($"large case b={batch} s_k={seqlenK} is not run with {GpuFixture.ModeVariable}=quick.");
        }

        if (LargeCaseParity < 0)
        {
            Assert.Skip($"large case b={batch} s_k={seqlenK} runs on the default decoder only (this class restricts the decoder to a path tested at that size before).");
        }

        if (index % 2 != LargeCaseParity)
        {
            Assert.Skip($"large case b={batch} s_k={seqlenK} runs with the other element type (each type runs half of the large cases).");
        }

        RunHostAndCheck(decoder, new DecodeCaseSpec
        {
            Batch = batch,
            QueryLength = queryLength,
            QueryHeads = 16,
            KvHeads = 1,
            SeqlenK = seqlenK,
            ZeroLengthRequests = batch / 4,
            Causal = causal,
            PageBlockSize = 64,
            ExtraTableColumns = 0,
            ExtraPoolBlocks = 1,
            Seed = TestSeeds.Next(Name() + index.ToString(CultureInfo.InvariantCulture)),
        });
    }

    [Fact]
    public void Determinism_TwoRunsAreBitwiseEqual()
    {
        var decoder = Decoder();
        var context = decoder.Context;
        var stream = gpu.RequireStream();
        var decodeCase = DecodeCase<T>.Create(new DecodeCaseSpec
        {
            Batch = 6,
            QueryLength = 2,
            QueryHeads = 64,
            KvHeads = 1,
            SeqlenK = 2000,
            Varlen = true,
            ZeroLengthRequests = 2,
            Causal = true,
            PageBlockSize = 64,
            Seed = TestSeeds.Next(Name()),
        });
        using var device = DeviceCase<T>.Upload(context, decodeCase, stream);
        using var plan = decoder.CreatePlan(decodeCase.Spec.Batch, decodeCase.Spec.QueryLength, decodeCase.Spec.QueryHeads, decodeCase.Spec.KvHeads);
        Assert.True(plan.NumParts > 1, $"{plan}: the case should split requests");

        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, decodeCase.Spec.PageBlockSize, stream);
        device.Poison(stream);
        device.Decode(decoder, plan, stream, decodeCase.Options);
        decoder.Synchronize(stream);
        var (first, firstLse) = device.Read(stream);

        device.Poison(stream);
        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, decodeCase.Spec.PageBlockSize, stream);
        device.Decode(decoder, plan, stream, decodeCase.Options);
        decoder.Synchronize(stream);
        var (second, secondLse) = device.Read(stream);

        AssertBitwiseEqual(first, second, "out", decodeCase.Description);
        AssertBitwiseEqual(firstLse, secondLse, "lse", decodeCase.Description);
        CheckAgainstReference(decodeCase, ToHostTensor(first, decodeCase), ToHostLse(firstLse, decodeCase));
    }

    [Fact]
    public void GraphCapture_UpdatePlanAndDecode_ReplaysBitwiseEqual()
    {
        var decoder = Decoder();
        var context = decoder.Context;
        using var stream = CudaStream.Create(context, nonBlocking: true);
        var decodeCase = DecodeCase<T>.Create(new DecodeCaseSpec
        {
            Batch = 4,
            QueryLength = 1,
            QueryHeads = 128,
            KvHeads = 1,
            SeqlenK = 1500,
            Varlen = true,
            ZeroLengthRequests = 2,
            PageBlockSize = 64,
            Seed = TestSeeds.Next(Name()),
        });
        using var device = DeviceCase<T>.Upload(context, decodeCase, stream);
        using var plan = decoder.CreatePlan(decodeCase.Spec.Batch, 1, 128, 1);

        // Direct run.
        device.Poison(stream);
        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, decodeCase.Spec.PageBlockSize, stream);
        device.Decode(decoder, plan, stream, decodeCase.Options);
        decoder.Synchronize(stream);
        var (direct, directLse) = device.Read(stream);

        // Captured run, replayed twice.
        var wasChecked = decoder.CheckedMode;
        decoder.CheckedMode = false;
        using var graph = CudaGraph.Capture(stream, () =>
        {
            decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, decodeCase.Spec.PageBlockSize, stream);
            device.Decode(decoder, plan, stream, decodeCase.Options);
        });
        decoder.CheckedMode = wasChecked;
        using var exec = graph.Instantiate();
        for (var replay = 0; replay < 2; replay++)
        {
            device.Poison(stream);
            exec.Launch(stream);
            decoder.Synchronize(stream, plan);
            var (replayed, replayedLse) = device.Read(stream);
            AssertBitwiseEqual(direct, replayed, $"out (replay {replay})", decodeCase.Description);
            AssertBitwiseEqual(directLse, replayedLse, $"lse (replay {replay})", decodeCase.Description);
        }

        CheckAgainstReference(decodeCase, ToHostTensor(direct, decodeCase), ToHostLse(directLse, decodeCase));
    }

    [Fact]
    public void GuardedInputs_BadBlockId_RaisesNamingTheRequest_ThenContextStillWorks() =>
        ExpectBadBlockIdReported(Decoder(), gpu.RequireStream(), Name());

    [Fact]
    public void GuardedInputs_TooLongSeqlen_RaisesNamingTheRequest_ThenContextStillWorks() =>
        ExpectTooLongSeqlenReported(Decoder(), gpu.RequireStream(), Name());

    /// <summary>
    /// A page in use whose block id lies past the pool raises <see cref="MlaInputException"/> naming
    /// the request at the synchronization point; then the same plan and decoder give right results.
    /// </summary>
    internal static void ExpectBadBlockIdReported(CudaMlaDecoder decoder, CudaStream stream, string seedName)
    {
        var context = decoder.Context;
        var decodeCase = GuardCase();
        using var device = DeviceCase<T>.Upload(context, decodeCase, stream);

        // Request 2's first page (in use) points past the pool.
        var table = new int[decodeCase.BlockTable.Span.Length];
        decodeCase.BlockTable.Span.CopyTo(table);
        table[(int)decodeCase.BlockTable.Layout.OffsetOf(2, 0)] = decodeCase.NumBlocks + 7;
        device.TableBuffer.CopyFromAsync(table, stream);

        using var plan = decoder.CreatePlan(decodeCase.Spec.Batch, 1, decodeCase.Spec.QueryHeads, 1);
        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, decodeCase.Spec.PageBlockSize, stream);
        device.Decode(decoder, plan, stream, decodeCase.Options);
        var ex = Assert.Throws<MlaInputException>(() => decoder.Synchronize(stream));
        Assert.Equal(2, ex.RequestIndex);
        Assert.Equal(MlaInputError.BlockIdOutOfRange, ex.Reason);
        Assert.Contains("request 2", ex.Message, StringComparison.Ordinal);

        // The record was cleared: a decode with valid data synchronizes cleanly and is right.
        device.TableBuffer.CopyFromAsync(decodeCase.BlockTable.Span, stream);
        device.Poison(stream);
        device.Decode(decoder, plan, stream, decodeCase.Options);
        decoder.Synchronize(stream);
        var (output, lse) = device.Read(stream);
        CheckAgainstReference(decodeCase, ToHostTensor(output, decodeCase), ToHostLse(lse, decodeCase));
        RunHostAndCheck(decoder, SmallSpec(TestSeeds.Next(seedName)));
    }

    /// <summary>
    /// Lengths past the capacity and negative ones raise <see cref="MlaInputException"/> naming the
    /// lowest such request; then valid lengths on the same plan and decoder give right results.
    /// </summary>
    internal static void ExpectTooLongSeqlenReported(CudaMlaDecoder decoder, CudaStream stream, string seedName)
    {
        var context = decoder.Context;
        var decodeCase = GuardCase();
        using var device = DeviceCase<T>.Upload(context, decodeCase, stream);
        var capacity = decodeCase.MaxBlocksPerSequence * decodeCase.Spec.PageBlockSize;
        int[] seqlens = [.. decodeCase.Seqlens];
        seqlens[1] = capacity + 1;
        seqlens[3] = -5;
        device.SeqlensBuffer.CopyFromAsync(seqlens, stream);

        using var plan = decoder.CreatePlan(decodeCase.Spec.Batch, 1, decodeCase.Spec.QueryHeads, 1);
        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, decodeCase.Spec.PageBlockSize, stream);
        device.Decode(decoder, plan, stream, decodeCase.Options);
        var ex = Assert.Throws<MlaInputException>(() => decoder.Synchronize(stream));
        Assert.Equal(1, ex.RequestIndex);
        Assert.Equal(MlaInputError.SequenceLengthOutOfRange, ex.Reason);
        Assert.Contains("cacheSeqlens[1]", ex.Message, StringComparison.Ordinal);

        // Valid lengths again: no error, right results.
        device.SeqlensBuffer.CopyFromAsync(decodeCase.CacheSeqlens.Span, stream);
        device.Poison(stream);
        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, decodeCase.Spec.PageBlockSize, stream);
        device.Decode(decoder, plan, stream, decodeCase.Options);
        decoder.Synchronize(stream);
        var (output, lse) = device.Read(stream);
        CheckAgainstReference(decodeCase, ToHostTensor(output, decodeCase), ToHostLse(lse, decodeCase));
        RunHostAndCheck(decoder, SmallSpec(TestSeeds.Next(seedName)));
    }

    [Fact]
    public void CheckedMode_RaisesAtDecode()
    {
        var decoder = Decoder();
        var context = decoder.Context;
        var stream = gpu.RequireStream();
        var decodeCase = GuardCase();
        using var device = DeviceCase<T>.Upload(context, decodeCase, stream);
        var table = new int[decodeCase.BlockTable.Span.Length];
        decodeCase.BlockTable.Span.CopyTo(table);
        table[(int)decodeCase.BlockTable.Layout.OffsetOf(0, 1)] = -3;
        device.TableBuffer.CopyFromAsync(table, stream);

        using var plan = decoder.CreatePlan(decodeCase.Spec.Batch, 1, decodeCase.Spec.QueryHeads, 1);
        decoder.UpdatePlan(plan, device.Seqlens, decodeCase.MaxBlocksPerSequence, decodeCase.Spec.PageBlockSize, stream);
        decoder.CheckedMode = true;
        try
        {
            var ex = Assert.Throws<MlaInputException>(() => device.Decode(decoder, plan, stream, decodeCase.Options));
            Assert.Equal(0, ex.RequestIndex);
            Assert.Equal(MlaInputError.BlockIdOutOfRange, ex.Reason);
        }
        finally
        {
            decoder.CheckedMode = false;
        }

        decoder.Synchronize(stream); // already reported and cleared
    }

    [Fact]
    public void Plan_ThatDoesNotMatch_IsRejectedOnPlan()
    {
        var decoder = Decoder();
        var context = decoder.Context;
        var stream = gpu.RequireStream();
        var decodeCase = DecodeCase<T>.Create(SmallSpec(TestSeeds.Next(Name())));
        using var device = DeviceCase<T>.Upload(context, decodeCase, stream);
        var spec = decodeCase.Spec;

        using var unscheduled = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        var ex = Assert.Throws<ArgumentException>(() => device.Decode(decoder, unscheduled, stream, decodeCase.Options));
        Assert.Equal("plan", ex.ParamName);

        using var wrongHeads = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads * 2, spec.KvHeads);
        decoder.UpdatePlan(wrongHeads, device.Seqlens, decodeCase.MaxBlocksPerSequence, spec.PageBlockSize, stream);
        ex = Assert.Throws<ArgumentException>(() => device.Decode(decoder, wrongHeads, stream, decodeCase.Options));
        Assert.Equal("plan", ex.ParamName);

        using var wrongCapacity = decoder.CreatePlan(spec.Batch, spec.QueryLength, spec.QueryHeads, spec.KvHeads);
        decoder.UpdatePlan(wrongCapacity, device.Seqlens, decodeCase.MaxBlocksPerSequence + 1, spec.PageBlockSize, stream);
        ex = Assert.Throws<ArgumentException>(() => device.Decode(decoder, wrongCapacity, stream, decodeCase.Options));
        Assert.Equal("plan", ex.ParamName);
        decoder.Synchronize(stream);
    }

    [Fact]
    public void DecodeHost_InvalidSequences_ThrowBeforeWriting()
    {
        var decoder = Decoder();
        var decodeCase = DecodeCase<T>.Create(SmallSpec(TestSeeds.Next(Name())));
        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();
        decodeCase.CacheSeqlens.Span[0] = (decodeCase.MaxBlocksPerSequence * decodeCase.Spec.PageBlockSize) + 1;
        var ex = Assert.Throws<ArgumentOutOfRangeException>(
            () => decoder.DecodeHost(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, output, lse, decodeCase.Options));
        Assert.Equal("cacheSeqlens", ex.ParamName);
        TestTensors.AssertUntouched(output, "out");
        TestTensors.AssertUntouched(lse, "lse");
    }

    protected static string Name([System.Runtime.CompilerServices.CallerMemberName] string member = "") =>
        $"Gpu/{member}/{TestTensors.DTypeName<T>()}";

    private static DecodeCaseSpec SmallSpec(int seed) => new()
    {
        Batch = 2,
        QueryLength = 2,
        QueryHeads = 16,
        KvHeads = 2,
        SeqlenK = 100,
        Causal = true,
        PageBlockSize = 16,
        Seed = seed,
    };

    private static DecodeCase<T> GuardCase() => DecodeCase<T>.Create(new DecodeCaseSpec
    {
        Batch = 5,
        QueryLength = 1,
        QueryHeads = 16,
        KvHeads = 1,
        SeqlenK = 200,
        PageBlockSize = 64,
        Seed = TestSeeds.Next($"GuardCase/{TestTensors.DTypeName<T>()}"),
    });

    /// <summary>Decodes a generated case through <see cref="CudaMlaDecoder.DecodeHost{TQ, TKv, TOut}(HostTensor{TQ}, HostTensor{TKv}, HostTensor{int}, HostTensor{int}, HostTensor{TOut}, HostTensor{float}, MlaDecodeOptions?)"/> and checks it against the reference.</summary>
    internal static (DecodeCase<T> Case, HostTensor<T> Output, HostTensor<float> Lse) RunHostAndCheck(CudaMlaDecoder decoder, DecodeCaseSpec spec)
    {
        var decodeCase = DecodeCase<T>.Create(spec);
        var output = decodeCase.NewOutput();
        var lse = decodeCase.NewLse();
        decoder.DecodeHost(decodeCase.Q, decodeCase.KCache, decodeCase.BlockTable, decodeCase.CacheSeqlens, output, lse, decodeCase.Options);
        TestTensors.AssertFullyWrittenWithinView(output, "out", decodeCase.Description);
        TestTensors.AssertFullyWrittenWithinView(lse, "lse", decodeCase.Description);
        CheckAgainstReference(decodeCase, output, lse);
        return (decodeCase, output, lse);
    }

    private static void CheckAgainstReference(DecodeCase<T> decodeCase, HostTensor<T> output, HostTensor<float> lse)
    {
        Compare.AssertDecode(decodeCase, output, lse, OutputTolerance);
    }

    private static HostTensor<T> ToHostTensor(T[] output, DecodeCase<T> decodeCase) =>
        new(output, TensorLayout.Contiguous(decodeCase.Spec.Batch, decodeCase.Spec.QueryLength, decodeCase.Spec.QueryHeads, 512));

    private static HostTensor<float> ToHostLse(float[] lse, DecodeCase<T> decodeCase) =>
        new(lse, TensorLayout.Contiguous(decodeCase.Spec.Batch, decodeCase.Spec.QueryHeads, decodeCase.Spec.QueryLength));

    private static void AssertBitwiseEqual<TE>(TE[] expected, TE[] actual, string what, string context)
        where TE : unmanaged
    {
        var a = MemoryMarshal.AsBytes(expected.AsSpan());
        var b = MemoryMarshal.AsBytes(actual.AsSpan());
        Assert.Equal(a.Length, b.Length);
        if (!a.SequenceEqual(b))
        {
            var i = a.CommonPrefixLength(b) / Marshal.SizeOf<TE>();
            Assert.Fail($"{what}: runs differ bitwise, first at element {i} ({expected[i]} vs {actual[i]}). Case: {context}");
        }
    }
}

/// <summary>A generated case on the device: inputs with the host layouts, contiguous outputs.</summary>
/// <typeparam name="T">The element type.</typeparam>
internal sealed class DeviceCase<T> : IDisposable
    where T : unmanaged
{
    private DeviceCase(CudaContext context, DecodeCase<T> decodeCase)
    {
        Context = context;
        Case = decodeCase;
        var spec = decodeCase.Spec;
        QBuffer = Upload(context, decodeCase.Q);
        KBuffer = Upload(context, decodeCase.KCache);
        TableBuffer = Upload(context, decodeCase.BlockTable);
        SeqlensBuffer = Upload(context, decodeCase.CacheSeqlens);
        OutputBuffer = DeviceBuffer<T>.Allocate(context, (long)spec.Batch * spec.QueryLength * spec.QueryHeads * 512);
        LseBuffer = DeviceBuffer<float>.Allocate(context, (long)spec.Batch * spec.QueryHeads * spec.QueryLength);
        Q = QBuffer.AsTensor(decodeCase.Q.Layout);
        K = KBuffer.AsTensor(decodeCase.KCache.Layout);
        Table = TableBuffer.AsTensor(decodeCase.BlockTable.Layout);
        Seqlens = SeqlensBuffer.AsTensor(decodeCase.CacheSeqlens.Layout);
        Output = OutputBuffer.AsTensor(spec.Batch, spec.QueryLength, spec.QueryHeads, 512);
        Lse = LseBuffer.AsTensor(spec.Batch, spec.QueryHeads, spec.QueryLength);
    }

    public CudaContext Context { get; }

    public DecodeCase<T> Case { get; }

    public DeviceBuffer<T> QBuffer { get; }

    public DeviceBuffer<T> KBuffer { get; }

    public DeviceBuffer<int> TableBuffer { get; }

    public DeviceBuffer<int> SeqlensBuffer { get; }

    public DeviceBuffer<T> OutputBuffer { get; }

    public DeviceBuffer<float> LseBuffer { get; }

    public DeviceTensor<T> Q { get; }

    public DeviceTensor<T> K { get; }

    public DeviceTensor<int> Table { get; }

    public DeviceTensor<int> Seqlens { get; }

    public DeviceTensor<T> Output { get; }

    public DeviceTensor<float> Lse { get; }

    public static DeviceCase<T> Upload(CudaContext context, DecodeCase<T> decodeCase, CudaStream stream)
    {
        var device = new DeviceCase<T>(context, decodeCase);
        stream.Synchronize();
        return device;
    }

    /// <summary>Fills the outputs with the tests' poison pattern (not NaN-free, not the library's NaN).</summary>
    public void Poison(CudaStream stream)
    {
        DeviceFill.Fill(OutputBuffer, ((uint)TestTensors.PoisonBits16 << 16) | TestTensors.PoisonBits16, stream);
        DeviceFill.Fill(LseBuffer, TestTensors.PoisonBits32, stream);
    }

    public void Decode(CudaMlaDecoder decoder, CudaDecodePlan plan, CudaStream stream, MlaDecodeOptions options) =>
        decoder.Decode(Q, K, Table, Seqlens, plan, Output, Lse, stream, options);

    /// <summary>Reads the outputs (after the stream) and asserts every element was written.</summary>
    public (T[] Output, float[] Lse) Read(CudaStream stream)
    {
        var output = new T[OutputBuffer.Length];
        OutputBuffer.CopyTo(output, stream);
        var lse = new float[LseBuffer.Length];
        LseBuffer.CopyTo(lse, stream);
        var spec = Case.Spec;
        TestTensors.AssertFullyWrittenWithinView(new HostTensor<T>(output, TensorLayout.Contiguous(spec.Batch, spec.QueryLength, spec.QueryHeads, 512)), "out", Case.Description);
        TestTensors.AssertFullyWrittenWithinView(new HostTensor<float>(lse, TensorLayout.Contiguous(spec.Batch, spec.QueryHeads, spec.QueryLength)), "lse", Case.Description);
        return (output, lse);
    }

    public void Dispose()
    {
        QBuffer.Dispose();
        KBuffer.Dispose();
        TableBuffer.Dispose();
        SeqlensBuffer.Dispose();
        OutputBuffer.Dispose();
        LseBuffer.Dispose();
    }

    private static DeviceBuffer<TE> Upload<TE>(CudaContext context, HostTensor<TE> tensor)
        where TE : unmanaged => DeviceBuffer<TE>.FromHost(context, tensor.Span[..(int)tensor.Layout.RequiredLength]);
}

/// <summary>The schedule kernel against <see cref="DecodeSchedule.Compute"/>, bit for bit.</summary>
[Collection(GpuCollection.Name)]
public sealed class GpuScheduleTests(GpuFixture gpu)
{
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(1, 16, 1)]
    [InlineData(1, 128, 1)]
    [InlineData(2, 64, 8)]
    [InlineData(4, 128, 1)]
    [InlineData(1, 128, 2)]
    public void ScheduleKernel_MatchesDecodeScheduleCompute(int queryLength, int queryHeads, int kvHeads)
    {
        var decoder = gpu.RequireDecoder();
        var context = decoder.Context;
        var stream = gpu.RequireStream();
        var rng = new Random(TestSeeds.Next($"Schedule/{queryLength}/{queryHeads}/{kvHeads}"));
        var rounds = GpuFixture.Quick ? 3 : 10;
        for (var round = 0; round < rounds; round++)
        {
            var batch = round switch { 0 => 1, 1 => 2, _ => rng.Next(1, 300) };
            var maxLen = rng.Next(1, 3) == 1 ? 200 : 20_000;
            var seqlens = new int[batch];
            for (var i = 0; i < batch; i++)
            {
                seqlens[i] = rng.NextDouble() < 0.2 ? 0 : rng.Next(0, maxLen + 1);
            }

            using var plan = decoder.CreatePlan(batch, queryLength, queryHeads, kvHeads);
            using var deviceSeqlens = DeviceBuffer<int>.FromHost(context, seqlens);
            var maxBlocks = (seqlens.Max() + 63) / 64 + 1;
            decoder.UpdatePlan(plan, deviceSeqlens.AsTensor(batch), maxBlocks, 64, stream);
            decoder.Synchronize(stream);
            var (parts, numSplits) = plan.ReadSchedule(stream);
            var expected = DecodeSchedule.Compute(seqlens, plan.NumParts);
            var context2 = $"b={batch} parts={plan.NumParts} seqlens=[{string.Join(",", seqlens)}]";
            Assert.True(expected.NumSplits.SequenceEqual(numSplits), $"num_splits differ: expected [{string.Join(",", expected.NumSplits.ToArray())}], got [{string.Join(",", numSplits)}]; {context2}");
            for (var p = 0; p < parts.Length; p++)
            {
                Assert.True(expected.Parts[p] == parts[p], $"part {p}: expected {expected.Parts[p]}, got {parts[p]}; {context2}");
            }
        }
    }
}

[Collection(GpuCollection.Name)]
public sealed class GpuDecodeTests_BFloat16(GpuFixture gpu) : GpuDecodeTests<BFloat16>(gpu)
{
    protected override int LargeCaseParity => 0;
}

[Collection(GpuCollection.Name)]
public sealed class GpuDecodeTests_Half(GpuFixture gpu) : GpuDecodeTests<Half>(gpu)
{
    protected override int LargeCaseParity => 1;
}

/// <summary>The same grid on the portable mma.sync path alone (on sm_90a the wgmma path takes the page-64 cases otherwise).</summary>
[Collection(GpuCollection.Name)]
public sealed class GpuDecodeTests_BFloat16_MmaSync(GpuFixture gpu) : GpuDecodeTests<BFloat16>(gpu)
{
    private readonly GpuFixture _gpu = gpu;

    // The large cases run on the default decoder; this path's are unchanged from its own release.
    protected override int LargeCaseParity => -1;

    protected override CudaMlaDecoder Decoder() => _gpu.RequireMmaSyncDecoder();
}

/// <summary>The same grid on the portable mma.sync path alone, fp16.</summary>
[Collection(GpuCollection.Name)]
public sealed class GpuDecodeTests_Half_MmaSync(GpuFixture gpu) : GpuDecodeTests<Half>(gpu)
{
    private readonly GpuFixture _gpu = gpu;

    protected override int LargeCaseParity => -1;

    protected override CudaMlaDecoder Decoder() => _gpu.RequireMmaSyncDecoder();
}
