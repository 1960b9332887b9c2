using FlashMla.Mla.Cpu;
using FlashMla.Mla;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Mla;

/// <summary>
/// One test per bad input: the exception type, its ParamName, the expected and actual values in the
/// message, and untouched (still poisoned) outputs.
/// </summary>
public class MlaDecodeValidationTests
{
    // Valid base: b=2, s_q=2, h_q=4, h_kv=2, d=576, page 16, lengths {40, 17}, 4 table columns
    // (3 in use by the longer request, one more; capacity 64), 11 blocks (8 in the table, 3 more).
    private static DecodeCase<BFloat16> BaseCase() => DecodeCase<BFloat16>.Create(new DecodeCaseSpec
    {
        Batch = 2,
        QueryLength = 2,
        QueryHeads = 4,
        KvHeads = 2,
        PageBlockSize = 16,
        Lengths = [40, 17],
        Causal = true,
        SeqlenPadding = 1,
        ExtraTableColumns = 1,
        ExtraPoolBlocks = 3,
        Seed = 7,
    });

    private sealed class Args
    {
        public Args()
        {
            var c = BaseCase();
            Assert.Equal(4, c.MaxBlocksPerSequence);
            Assert.Equal(11, c.NumBlocks);
            Q = c.Q;
            KCache = c.KCache;
            BlockTable = c.BlockTable;
            CacheSeqlens = c.CacheSeqlens;
            Output = c.NewOutput();
            Lse = c.NewLse();
            Options = c.Options;
        }

        public HostTensor<BFloat16> Q { get; set; }

        public HostTensor<BFloat16> KCache { get; set; }

        public HostTensor<int> BlockTable { get; set; }

        public HostTensor<int> CacheSeqlens { get; set; }

        public HostTensor<BFloat16> Output { get; set; }

        public HostTensor<float> Lse { get; set; }

        public MlaDecodeOptions Options { get; set; }

        public DecodeSchedule? Schedule { get; set; }

        public bool UseSchedule { get; set; }

        public void Decode()
        {
            var decoder = new CpuMlaDecoder();
            if (UseSchedule)
            {
                decoder.Decode(Q, KCache, BlockTable, CacheSeqlens, Schedule!, Output, Lse, Options);
            }
            else
            {
                decoder.Decode(Q, KCache, BlockTable, CacheSeqlens, Output, Lse, Options);
            }
        }
    }

    private sealed record BadInput(Action<Args> Mutate, Type Exception, string ParamName, params string[] MessageParts);

    private static HostTensor<T> Strided<T>(long[] shape, long[] strides)
        where T : unmanaged
    {
        var layout = new TensorLayout(shape, strides);
        return TestTensors.Allocate(layout, TestTensors.Poison<T>());
    }

    private static HostTensor<T> Poisoned<T>(params long[] shape)
        where T : unmanaged => TestTensors.AllocatePoisoned<T>(false, shape);

    private static readonly Type AE = typeof(ArgumentException);
    private static readonly Type AOORE = typeof(ArgumentOutOfRangeException);
    private static readonly Type ANE = typeof(ArgumentNullException);

    private static readonly Dictionary<string, BadInput> Cases = new()
    {
        // q
        ["q_null"] = new(a => a.Q = null!, ANE, "q"),
        ["q_rank3"] = new(a => a.Q = Poisoned<BFloat16>(2, 2, 2304), AE, "q", "rank 4", "got rank 3"),
        ["q_batch0"] = new(a => a.Q = Poisoned<BFloat16>(0, 2, 4, 576), AE, "q", "batch", "got 0"),
        ["q_seq0"] = new(a => a.Q = Poisoned<BFloat16>(2, 0, 4, 576), AE, "q", "s_q", "got 0"),
        ["q_headDim100"] = new(a => a.Q = Poisoned<BFloat16>(2, 2, 4, 100), AE, "q", "576 or 512", "got 100"),
        ["q_headDim640"] = new(a => a.Q = Poisoned<BFloat16>(2, 2, 4, 640), AE, "q", "576 or 512", "got 640"),
        ["q_lastDimStrided"] = new(a => a.Q = Strided<BFloat16>([2, 2, 4, 576], [9216, 4608, 1152, 2]), AE, "q", "stride 1", "got stride 2"),

        // kCache
        ["kCache_null"] = new(a => a.KCache = null!, ANE, "kCache"),
        ["kCache_rank3"] = new(a => a.KCache = Poisoned<BFloat16>(11, 16, 1152), AE, "kCache", "rank 4", "got rank 3"),
        ["kCache_numBlocks0"] = new(a => a.KCache = Poisoned<BFloat16>(0, 16, 2, 576), AE, "kCache", "num_blocks", "got 0"),
        ["kCache_pageSize0"] = new(a => a.KCache = Poisoned<BFloat16>(11, 0, 2, 576), AE, "kCache", "page_block_size", "at least 1", "got 0"),
        ["kCache_headDimMismatch"] = new(a => a.KCache = Poisoned<BFloat16>(11, 16, 2, 512), AE, "kCache", "equal q's (576)", "got 512"),
        ["kCache_headsDoNotDivide"] = new(a => a.KCache = Poisoned<BFloat16>(11, 16, 3, 576), AE, "kCache", "h_q = 4", "h_kv = 3", "4 % 3 = 1"),
        ["kCache_lastDimStrided"] = new(a => a.KCache = Strided<BFloat16>([11, 16, 2, 576], [36864, 2304, 1152, 2]), AE, "kCache", "stride 1", "got stride 2"),

        // blockTable layout
        ["blockTable_null"] = new(a => a.BlockTable = null!, ANE, "blockTable"),
        ["blockTable_rank1"] = new(a => a.BlockTable = Poisoned<int>(8), AE, "blockTable", "rank 2", "got rank 1"),
        ["blockTable_batchMismatch"] = new(a => a.BlockTable = Poisoned<int>(3, 4), AE, "blockTable", "[2, max_blocks_per_seq]", "got [3, 4]"),
        ["blockTable_noColumns"] = new(a => a.BlockTable = Poisoned<int>(2, 0), AE, "blockTable", "max_blocks_per_seq", "got 0"),
        ["blockTable_lastDimStrided"] = new(a => a.BlockTable = Strided<int>([2, 4], [8, 2]), AE, "blockTable", "stride 1", "got stride 2"),

        // cacheSeqlens layout
        ["cacheSeqlens_null"] = new(a => a.CacheSeqlens = null!, ANE, "cacheSeqlens"),
        ["cacheSeqlens_rank2"] = new(a => a.CacheSeqlens = Poisoned<int>(2, 1), AE, "cacheSeqlens", "rank 1", "got rank 2"),
        ["cacheSeqlens_batchMismatch"] = new(a => a.CacheSeqlens = Poisoned<int>(3), AE, "cacheSeqlens", "[2]", "got [3]"),
        ["cacheSeqlens_strided"] = new(a => a.CacheSeqlens = Strided<int>([2], [2]), AE, "cacheSeqlens", "stride 1", "got stride 2"),

        // output
        ["output_null"] = new(a => a.Output = null!, ANE, "output"),
        ["output_rank3"] = new(a => a.Output = Poisoned<BFloat16>(2, 2, 2048), AE, "output", "rank 4", "got rank 3"),
        ["output_headDim576"] = new(a => a.Output = Poisoned<BFloat16>(2, 2, 4, 576), AE, "output", "[2, 2, 4, 512]", "got [2, 2, 4, 576]"),
        ["output_queryLengthMismatch"] = new(a => a.Output = Poisoned<BFloat16>(2, 1, 4, 512), AE, "output", "[2, 2, 4, 512]", "got [2, 1, 4, 512]"),
        ["output_headsMismatch"] = new(a => a.Output = Poisoned<BFloat16>(2, 2, 8, 512), AE, "output", "[2, 2, 4, 512]", "got [2, 2, 8, 512]"),
        ["output_lastDimStrided"] = new(a => a.Output = Strided<BFloat16>([2, 2, 4, 512], [8192, 4096, 1024, 2]), AE, "output", "stride 1", "got stride 2"),

        // lse
        ["lse_null"] = new(a => a.Lse = null!, ANE, "lse"),
        ["lse_rank2"] = new(a => a.Lse = Poisoned<float>(2, 8), AE, "lse", "rank 3", "got rank 2"),
        ["lse_transposed"] = new(a => a.Lse = Poisoned<float>(2, 2, 4), AE, "lse", "[2, 4, 2]", "got [2, 2, 4]"),
        ["lse_lastDimStrided"] = new(a => a.Lse = Strided<float>([2, 4, 2], [16, 4, 2]), AE, "lse", "stride 1", "got stride 2"),

        // options
        ["options_headDimV256"] = new(a => a.Options = new MlaDecodeOptions { HeadDimV = 256 }, AOORE, "options", "must be 512", "got 256"),
        ["options_headDimV576"] = new(a => a.Options = new MlaDecodeOptions { HeadDimV = 576 }, AOORE, "options", "must be 512", "got 576"),
        ["options_scaleNaN"] = new(a => a.Options = new MlaDecodeOptions { SoftmaxScale = float.NaN }, AOORE, "options", "finite", "NaN"),
        ["options_scaleInfinite"] = new(a => a.Options = new MlaDecodeOptions { SoftmaxScale = float.PositiveInfinity }, AOORE, "options", "finite", "Infinity"),

        // host-visible sequence data
        ["cacheSeqlens_negative"] = new(a => a.CacheSeqlens.Span[1] = -1, AOORE, "cacheSeqlens", "cacheSeqlens[1] = -1", "[0, 64]"),
        ["cacheSeqlens_overCapacity"] = new(a => a.CacheSeqlens.Span[0] = 65, AOORE, "cacheSeqlens", "cacheSeqlens[0] = 65", "capacity 64", "max_blocks_per_seq 4", "page_block_size 16"),
        ["blockTable_negativeIdInUse"] = new(a => a.BlockTable.Span[2] = -5, AOORE, "blockTable", "blockTable[0, 2] = -5", "[0, 11)", "seqlen 40"),
        ["blockTable_idEqualsNumBlocks"] = new(a => a.BlockTable.Span[4 + 1] = 11, AOORE, "blockTable", "blockTable[1, 1] = 11", "[0, 11)"),
        ["blockTable_hugeIdInUse"] = new(a => a.BlockTable.Span[0] = 2147480000, AOORE, "blockTable", "blockTable[0, 0] = 2147480000", "[0, 11)"),

        // schedule
        ["schedule_null"] = new(a => (a.UseSchedule, a.Schedule) = (true, null), ANE, "schedule"),
        ["schedule_wrongBatch"] = new(a => (a.UseSchedule, a.Schedule) = (true, DecodeSchedule.Compute([40, 17, 5], 4)), AE, "schedule", "3 request(s)", "batch has 2"),
        ["schedule_wrongLengths"] = new(a => (a.UseSchedule, a.Schedule) = (true, DecodeSchedule.Compute([40, 200], 4)), AE, "schedule", "request 1", "cacheSeqlens[1] = 17", "needs 1"),
    };

    public static TheoryData<string> CaseNames => new(Cases.Keys.Order(StringComparer.Ordinal));

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void BadInput_Throws_WithParamNameAndValues_AndWritesNothing(string name)
    {
        var bad = Cases[name];
        var args = new Args();
        var output = args.Output;
        var lse = args.Lse;
        bad.Mutate(args);

        var exception = Assert.Throws(bad.Exception, args.Decode);
        var argumentException = Assert.IsAssignableFrom<ArgumentException>(exception);
        Assert.Equal(bad.ParamName, argumentException.ParamName);
        foreach (var part in bad.MessageParts)
        {
            Assert.Contains(part, exception.Message, StringComparison.Ordinal);
        }

        TestTensors.AssertUntouched(output, "output");
        TestTensors.AssertUntouched(lse, "lse");
        if (args.Output is not null)
        {
            TestTensors.AssertUntouched(args.Output, "output");
        }

        if (args.Lse is not null)
        {
            TestTensors.AssertUntouched(args.Lse, "lse");
        }
    }

    [Fact]
    public void BaseCase_IsValid_SoEachBadInputIsTheOnlyProblem()
    {
        var args = new Args();
        args.Decode();
        TestTensors.AssertFullyWrittenWithinView(args.Output, "out", "base");
        var scheduled = new Args { UseSchedule = true };
        scheduled.Schedule = DecodeSchedule.Compute([40, 17], 3);
        scheduled.Decode();
        TestTensors.AssertFullyWrittenWithinView(scheduled.Output, "out", "base");
    }

    [Fact]
    public void UnsupportedElementType_Throws()
    {
        var decoder = new CpuMlaDecoder();
        var q = HostTensor<float>.Create(1, 1, 1, 576);
        var k = HostTensor<float>.Create(1, 64, 1, 576);
        var table = HostTensor<int>.Create(1, 1);
        var seqlens = HostTensor<int>.Create(1);
        var output = TestTensors.AllocatePoisoned<float>(false, 1, 1, 1, 512);
        var lse = TestTensors.AllocatePoisoned<float>(false, 1, 1, 1);
        var exception = Assert.Throws<ArgumentException>(() => decoder.Decode(q, k, table, seqlens, output, lse));
        Assert.Equal("q", exception.ParamName);
        Assert.Contains("System.Single", exception.Message, StringComparison.Ordinal);
        Assert.Contains("BFloat16", exception.Message, StringComparison.Ordinal);
        TestTensors.AssertUntouched(output, "output");
    }

    [Fact]
    public void ValidateLayouts_ReturnsTheShape()
    {
        var c = BaseCase();
        var output = c.NewOutput();
        var lse = c.NewLse();
        var shape = MlaDecodeValidation.ValidateLayouts(c.Q.Layout, c.KCache.Layout, c.BlockTable.Layout, c.CacheSeqlens.Layout, output.Layout, lse.Layout, c.Options);
        Assert.Equal(new MlaDecodeShape(2, 2, 4, 2, 576, 512, 11, 16, 4), shape);
        Assert.Equal(2, shape.Group);
        Assert.Equal(4, shape.RowsPerKvHead);
        Assert.Equal(64L, shape.Capacity);
    }

    [Fact]
    public void ValidateLayouts_AcceptsHeadDim512AndPaddedLayouts()
    {
        var c = DecodeCase<Half>.Create(new DecodeCaseSpec { Batch = 3, QueryLength = 2, QueryHeads = 8, KvHeads = 8, HeadDim = 512, PageBlockSize = 1, SeqlenK = 5, NonContiguous = true, Seed = 1 });
        var shape = MlaDecodeValidation.ValidateLayouts(c.Q.Layout, c.KCache.Layout, c.BlockTable.Layout, c.CacheSeqlens.Layout, c.NewOutput().Layout, c.NewLse().Layout, c.Options);
        Assert.Equal(512, shape.HeadDim);
        Assert.Equal(1, shape.Group);
        Assert.Equal(2, shape.RowsPerKvHead);
    }

    [Fact]
    public void ValidateSequences_ReadsStridedTensors_AndOnlyPagesInUse()
    {
        var shape = new MlaDecodeShape(3, 1, 16, 1, 576, 512, NumBlocks: 10, PageBlockSize: 16, MaxBlocksPerSequence: 3);

        // seqlens {16, 0, 33} with stride 2; block table with row stride 5.
        var seqlens = new HostTensor<int>(new[] { 16, -99, 0, -99, 33 }, new TensorLayout([3], [2]));
        var table = new HostTensor<int>(
            new[]
            {
                4, -1, 2147480000, 0, 0,   // request 0: one page in use
                -7, 99, -1, 0, 0,          // request 1: no page in use
                9, 0, 3,                   // request 2: three pages in use
            },
            new TensorLayout([3, 3], [5, 1]));
        MlaDecodeValidation.ValidateSequences(shape, seqlens, table);

        table.Span[12] = 10; // request 2, page 2 → out of range
        var exception = Assert.Throws<ArgumentOutOfRangeException>(() => MlaDecodeValidation.ValidateSequences(shape, seqlens, table));
        Assert.Equal("blockTable", exception.ParamName);
        Assert.Contains("blockTable[2, 2] = 10", exception.Message, StringComparison.Ordinal);
        Assert.Contains("[0, 10)", exception.Message, StringComparison.Ordinal);

        table.Span[12] = 3;
        seqlens.Span[4] = 49; // capacity is 48
        var tooLong = Assert.Throws<ArgumentOutOfRangeException>(() => MlaDecodeValidation.ValidateSequences(shape, seqlens, table));
        Assert.Equal("cacheSeqlens", tooLong.ParamName);
        Assert.Contains("cacheSeqlens[2] = 49 exceeds the block table's capacity 48 (max_blocks_per_seq 3 × page_block_size 16)", tooLong.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ValidateSequences_RejectsMismatchedShapes()
    {
        var shape = new MlaDecodeShape(2, 1, 16, 1, 576, 512, 10, 16, 3);
        var exception = Assert.Throws<ArgumentException>(() => MlaDecodeValidation.ValidateSequences(shape, HostTensor<int>.Create(3), HostTensor<int>.Create(2, 3)));
        Assert.Equal("cacheSeqlens", exception.ParamName);
        exception = Assert.Throws<ArgumentException>(() => MlaDecodeValidation.ValidateSequences(shape, HostTensor<int>.Create(2), HostTensor<int>.Create(2, 4)));
        Assert.Equal("blockTable", exception.ParamName);
        Assert.Contains("[2, 3]", exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_DefaultsAndScale()
    {
        var options = new MlaDecodeOptions();
        Assert.Null(options.SoftmaxScale);
        Assert.False(options.Causal);
        Assert.Equal(512, options.HeadDimV);
        Assert.Equal(1f / MathF.Sqrt(576f), options.GetSoftmaxScale(576), 6);
        Assert.Equal(0.25f, (options with { SoftmaxScale = 0.25f }).GetSoftmaxScale(576));
    }

    [Fact]
    public void Decoder_RejectsBadParallelism()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuMlaDecoder(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuMlaDecoder(-2));
        Assert.Equal(-1, new CpuMlaDecoder().MaxDegreeOfParallelism);
        Assert.Equal(3, new CpuMlaDecoder(3).MaxDegreeOfParallelism);
    }

    [Fact]
    public void CreateSchedule_ValidatesArguments()
    {
        var decoder = new CpuMlaDecoder(2);
        var seqlens = new HostTensor<int>(new[] { 100, -1, 5000 }, new TensorLayout([2], [2]));
        var schedule = decoder.CreateSchedule(seqlens, 1, 128, 1);
        Assert.Equal(2, schedule.Batch);
        Assert.Equal(8, schedule.NumParts); // 4 tasks per thread over parts × KV heads
        Assert.Equal(2, decoder.CreateSchedule(seqlens, 1, 128, 4).NumParts);
        Assert.Throws<ArgumentException>(() => decoder.CreateSchedule(seqlens, 1, 128, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => decoder.CreateSchedule(seqlens, 0, 128, 1));
        var withNegative = new HostTensor<int>(new[] { 3, -3 }, TensorLayout.Contiguous(2));
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => decoder.CreateSchedule(withNegative, 1, 16, 1));
        Assert.Equal("cacheSeqlens", negative.ParamName);
        Assert.Contains("cacheSeqlens[1] = -3", negative.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InputException_CarriesRequestAndReason()
    {
        var exception = new MlaInputException(5, MlaInputError.BlockIdOutOfRange, "bad block");
        Assert.Equal(5, exception.RequestIndex);
        Assert.Equal(MlaInputError.BlockIdOutOfRange, exception.Reason);
        Assert.Equal("bad block", exception.Message);
        Assert.Equal(-1, new MlaInputException("x").RequestIndex);
        Assert.Equal(1, (int)MlaInputError.SequenceLengthOutOfRange);
        Assert.Equal(2, (int)MlaInputError.BlockIdOutOfRange);
    }
}
