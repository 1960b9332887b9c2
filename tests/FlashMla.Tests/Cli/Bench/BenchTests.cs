using System.Text.Json;
using System.Text.Json.Nodes;
using FlashMla.Cli;
using FlashMla.Cli.Backends;
using FlashMla.Cli.Bench;
using FlashMla.Cli.Commands;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Tests.Cli.Bench;

/// <summary>The bench's CPU-side logic: cases files, case names, the timing method's arithmetic, the JSON records.</summary>
public sealed class BenchTests
{
    private static readonly string[] FieldsOfACase =
        ["name", "b", "s_q", "h_q", "h_kv", "s_k", "varlen", "causal", "page_block_size", "dtype", "seqlens"];

    private static (int ExitCode, string Out, string Err) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static JsonObject GoodCase(string name = "b2 h16 s_k100 var") => new()
    {
        ["name"] = name,
        ["b"] = 2,
        ["s_q"] = 1,
        ["h_q"] = 16,
        ["h_kv"] = 1,
        ["s_k"] = 100,
        ["varlen"] = true,
        ["causal"] = false,
        ["page_block_size"] = 64,
        ["dtype"] = "bf16",
        ["seqlens"] = new JsonArray(130, 0),
    };

    private static string Cases(params JsonNode[] cases) => new JsonArray(cases).ToJsonString();

    // ---- cases files -------------------------------------------------------------------------

    [Fact]
    public void Cases_file_in_the_shared_format_is_read_with_its_names_and_lengths()
    {
        var fixedCase = new JsonObject
        {
            ["name"] = "b3 s_q2 h32 s_k64 fixed causal",
            ["b"] = 3,
            ["s_q"] = 2,
            ["h_q"] = 32,
            ["h_kv"] = 2,
            ["s_k"] = 64,
            ["varlen"] = false,
            ["causal"] = true,
            ["page_block_size"] = 16,
            ["seqlens"] = new JsonArray(64, 64, 64),
            ["comment"] = "fields the bench does not know are ignored",
        };
        var varCase = GoodCase();
        varCase["dtype"] = "fp16";
        var cases = BenchCasesFile.Parse(Cases(fixedCase, varCase), "t.json", "t", seed: 5);

        Assert.Equal(2, cases.Count);
        var a = cases[0];
        Assert.Equal("b3 s_q2 h32 s_k64 fixed causal", a.Name);
        Assert.Equal("t", a.Suite);
        Assert.Equal(new DecodeCaseSpec
        {
            Batch = 3, QueryLength = 2, QueryHeads = 32, KvHeads = 2, SeqlenK = 64, Varlen = false, Causal = true, PageBlockSize = 16,
            ElementType = ElementType.BFloat16, Seed = 5,
        }, a.Spec);
        Assert.Equal([64, 64, 64], a.SeqLens);
        Assert.Equal(64, a.MeanSeqLen);

        var b = cases[1];
        Assert.Equal(ElementType.Float16, b.Spec.ElementType);
        Assert.True(b.Spec.Varlen);
        Assert.Equal([130, 0], b.SeqLens);
        Assert.Equal(65, b.MeanSeqLen);
    }

    [Fact]
    public void Cases_file_dtype_may_be_left_out_as_on_the_flashmla_side()
    {
        var c = GoodCase();
        c.Remove("dtype");
        Assert.Equal(ElementType.BFloat16, Assert.Single(BenchCasesFile.Parse(Cases(c), "t.json", "t", 0)).Spec.ElementType);
    }

    [Fact]
    public void Cases_file_suite_is_the_file_name_without_extension()
    {
        var path = Path.Combine(Path.GetTempPath(), $"flashmla-cases-{Environment.ProcessId}-latency.json");
        File.WriteAllText(path, Cases(GoodCase()));
        try
        {
            var c = Assert.Single(BenchCasesFile.Load(path, 0));
            Assert.Equal(Path.GetFileNameWithoutExtension(path), c.Suite);
        }
        finally
        {
            File.Delete(path);
        }
    }

    public static TheoryData<string, string, string> BadFields()
    {
        var data = new TheoryData<string, string, string>();
        void Add(string field, JsonNode? value, string expected)
        {
            var c = GoodCase();
            c[field] = value;
            data.Add(field, Cases(c), expected);
        }
        void Remove(string field)
        {
            var c = GoodCase();
            c.Remove(field);
            data.Add(field, Cases(c), "is missing");
        }

        foreach (var field in FieldsOfACase.Where(f => f != "dtype"))
        {
            Remove(field);
        }
        Add("name", "", "non-empty string");
        Add("name", 3, "non-empty string");
        Add("b", 0, "integer >= 1");
        Add("b", "2", "integer >= 1");
        Add("b", 2.5, "integer >= 1");
        Add("s_q", 0, "integer >= 1");
        Add("h_q", -16, "integer >= 1");
        Add("h_kv", 0, "integer >= 1");
        Add("h_kv", 3, "must divide h_q (16)");
        Add("s_k", -1, "integer >= 0");
        Add("s_k", 1e12, "integer >= 0");
        Add("varlen", "yes", "true or false");
        Add("causal", 1, "true or false");
        Add("page_block_size", 0, "integer >= 1");
        Add("dtype", "fp32", "\"bf16\" or \"fp16\"");
        Add("dtype", null, "\"bf16\" or \"fp16\"");
        Add("seqlens", 100, "list of b (2) lengths");
        Add("seqlens", new JsonArray(100), "must hold b (2) lengths, got 1");
        Add("seqlens", new JsonArray(100, -1), "entry [1] must be an integer");
        Add("seqlens", new JsonArray(100, 7.5), "entry [1] must be an integer");
        Add("seqlens", new JsonArray(100, "7"), "entry [1] must be an integer");

        var fixedMismatch = GoodCase();
        fixedMismatch["varlen"] = false;
        data.Add("seqlens", Cases(fixedMismatch), "entry [0] is 130, but the case has fixed lengths (varlen false) of s_k 100");
        return data;
    }

    [Theory]
    [MemberData(nameof(BadFields))]
    public void Cases_file_with_a_bad_field_names_the_case_and_the_field(string field, string json, string expected)
    {
        var ex = Assert.Throws<CliUsageException>(() => BenchCasesFile.Parse(json, "t.json", "t", 0));
        Assert.Contains($"field \"{field}\"", ex.Message, StringComparison.Ordinal);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Contains("--cases t.json: case [0]", ex.Message, StringComparison.Ordinal);
        if (field != "name")
        {
            Assert.Contains("\"b2 h16 s_k100 var\"", ex.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("[{\"name\": ", "not valid JSON")]
    [InlineData("{\"name\": \"x\"}", "expected a JSON list of cases, found an object")]
    [InlineData("[]", "the list of cases is empty")]
    [InlineData("[3]", "case [0]: expected an object, found a number")]
    public void Cases_file_that_is_not_a_list_of_cases_is_rejected(string json, string expected)
    {
        var ex = Assert.Throws<CliUsageException>(() => BenchCasesFile.Parse(json, "t.json", "t", 0));
        Assert.Contains("--cases t.json", ex.Message, StringComparison.Ordinal);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cases_file_with_a_repeated_name_is_rejected()
    {
        var ex = Assert.Throws<CliUsageException>(() => BenchCasesFile.Parse(Cases(GoodCase("a"), GoodCase("b"), GoodCase("a")), "t.json", "t", 0));
        Assert.Contains("case [2] \"a\": field \"name\" repeats the name of case [0]", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bench_with_a_bad_cases_file_exits_with_2_before_looking_for_a_gpu()
    {
        var path = Path.Combine(Path.GetTempPath(), $"flashmla-bad-cases-{Environment.ProcessId}.json");
        var c = GoodCase();
        c["h_q"] = 0;
        File.WriteAllText(path, Cases(c));
        try
        {
            var (code, output, error) = Run("bench", "--cases", path);
            Assert.Equal(2, code);
            Assert.Equal(string.Empty, output);
            Assert.Contains("field \"h_q\"", error, StringComparison.Ordinal);
            Assert.Contains("\"b2 h16 s_k100 var\"", error, StringComparison.Ordinal);
            Assert.DoesNotContain("CUDA", error, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("bench", "--cases", "/nonexistent/cases.json")]
    [InlineData("bench", "--cases", "a.json", "--suite", "latency")]
    [InlineData("bench", "--suite", "latency", "--suite", "latency")]
    public void Bench_usage_errors_exit_with_2(params string[] args)
    {
        var (code, output, error) = Run(args);
        Assert.Equal(2, code);
        Assert.Contains("error:", error, StringComparison.Ordinal);
        Assert.Equal(string.Empty, output);
    }

    [Fact]
    public void Bench_cases_from_two_files_must_have_distinct_names()
    {
        var dir = Directory.CreateTempSubdirectory("flashmla-cases-");
        try
        {
            var a = Path.Combine(dir.FullName, "a.json");
            var b = Path.Combine(dir.FullName, "b.json");
            File.WriteAllText(a, Cases(GoodCase("x"), GoodCase("y")));
            File.WriteAllText(b, Cases(GoodCase("y")));
            var ex = Assert.Throws<CliUsageException>(() => BenchCommand.LoadCases([new FileInfo(a), new FileInfo(b)], 0));
            Assert.Contains("\"y\" is in both a.json and b.json", ex.Message, StringComparison.Ordinal);

            var both = BenchCommand.LoadCases([new FileInfo(a)], 0);
            Assert.Equal(["x", "y"], both.Select(c => c.Name));
            Assert.All(both, c => Assert.Equal("a", c.Suite));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    // ---- built-in suites and their names -----------------------------------------------------

    private static readonly DecodeCaseSpec BenchDefaults = new() { Batch = 128, SeqlenK = 4096, QueryHeads = 128, QueryLength = 1 };

    [Fact]
    public void Throughput_suite_names_follow_the_shared_cases()
    {
        var cases = BenchSuites.Cases("throughput", BenchDefaults);
        Assert.Equal(48, cases.Count);
        Assert.Equal(48, cases.Select(c => c.Name).Distinct().Count());
        Assert.Equal("b128 s_q1 h16 s_k4096 fixed", cases[0].Name);
        Assert.Equal("b128 s_q1 h16 s_k4096 var", cases[1].Name);
        Assert.Equal("b128 s_q1 h32 s_k4096 fixed", cases[2].Name);
        Assert.Equal("b128 s_q2 h16 s_k4096 fixed", cases[8].Name);
        Assert.Equal("b128 s_q1 h16 s_k8192 fixed", cases[16].Name);
        Assert.Equal("b128 s_q2 h128 s_k16384 var", cases[47].Name);
        Assert.All(cases, c =>
        {
            Assert.Equal("throughput", c.Suite);
            Assert.Equal(128, c.SeqLens.Count);
            Assert.Equal(c.Spec.Varlen, c.Name.EndsWith(" var", StringComparison.Ordinal));
            Assert.All(c.SeqLens, s => Assert.True(c.Spec.Varlen ? s >= c.Spec.QueryLength : s == c.Spec.SeqlenK));
        });
    }

    [Fact]
    public void Latency_suite_names_follow_the_shared_cases_including_the_mtp_case()
    {
        var cases = BenchSuites.Cases("latency", BenchDefaults);
        Assert.Equal(25, cases.Count);
        Assert.Equal(25, cases.Select(c => c.Name).Distinct().Count());
        Assert.Equal("b1 h16 s_k1024", cases[0].Name);
        Assert.Equal("b1 h16 s_k32768", cases[2].Name);
        Assert.Equal("b1 h128 s_k1024", cases[3].Name);
        Assert.Equal("b32 h128 s_k32768", cases[23].Name);
        var mtp = cases[24];
        Assert.Equal("b64 s_q4 h128 s_k4096 causal (MTP)", mtp.Name);
        Assert.Equal((64, 4, 128, 4096, true, false), (mtp.Spec.Batch, mtp.Spec.QueryLength, mtp.Spec.QueryHeads, mtp.Spec.SeqlenK, mtp.Spec.Causal, mtp.Spec.Varlen));
        Assert.All(cases.Take(24), c => Assert.False(c.Spec.Causal));
    }

    [Fact]
    public void Built_in_names_say_what_differs_from_the_shared_cases()
    {
        Assert.Equal("b128 s_q1 h128 s_k4096 fixed", Assert.Single(BenchSuites.Cases("single", BenchDefaults)).Name);
        var other = BenchDefaults with { PageBlockSize = 32, ElementType = ElementType.Float16, KvHeads = 2, Causal = true, Varlen = true, QueryLength = 2 };
        Assert.Equal("b128 s_q2 h128 s_k4096 var causal h_kv2 page32 fp16", Assert.Single(BenchSuites.Cases("single", other)).Name);
        Assert.Equal("b1 h16 s_k1024 page32", BenchSuites.Cases("latency", BenchDefaults with { PageBlockSize = 32 })[0].Name);
    }

    [Fact]
    public void Built_in_suites_carry_the_names_of_the_shared_cases_files()
    {
        var folder = SharedCasesFolder();
        if (folder is null)
        {
            Assert.Skip("the shared cases files are not here (neither .anchor/cases nor ../shared/bench/cases beside the checkout)");
        }
        foreach (var suite in (string[])["throughput", "latency"])
        {
            var shared = BenchCasesFile.Load(Path.Combine(folder, suite + ".json"), 0);
            var builtIn = BenchSuites.Cases(suite, BenchDefaults);
            Assert.Equal(shared.Select(c => c.Name), builtIn.Select(c => c.Name));
            Assert.Equal(shared.Select(c => c.Spec), builtIn.Select(c => c.Spec));
            // Fixed lengths are the same work on both; variable lengths are drawn differently.
            foreach (var (s, b) in shared.Zip(builtIn).Where(p => !p.First.Spec.Varlen))
            {
                Assert.Equal(s.SeqLens, b.SeqLens);
            }
        }
    }

    private static string? SharedCasesFolder()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "FlashMla.slnx")))
            {
                foreach (var candidate in (string[])[Path.Combine(dir.FullName, ".anchor", "cases"), Path.Combine(dir.FullName, "..", "shared", "bench", "cases")])
                {
                    if (File.Exists(Path.Combine(candidate, "throughput.json")) && File.Exists(Path.Combine(candidate, "latency.json")))
                    {
                        return candidate;
                    }
                }
                return null;
            }
        }
        return null;
    }

    // ---- the timing method's arithmetic ------------------------------------------------------

    [Theory]
    [InlineData(1L << 20, 50L << 20, 100L << 30, 64)]          // ceil(200) clamped to 64
    [InlineData(600_000_000L, 50L << 20, 100L << 30, 1)]       // one copy is over 4× L2
    [InlineData(30L << 20, 50L << 20, 100L << 30, 7)]          // ceil(6.67)
    [InlineData(1000L, 1000L, 1L << 30, 4)]                    // exactly 4× L2: no rounding up
    [InlineData(1001L, 1000L, 1L << 30, 4)]                    // ceil(3.996)
    [InlineData(10L << 20, 50L << 20, 100L << 20, 5)]          // 20 wanted, 5 copies = half the free memory
    [InlineData(10L << 20, 50L << 20, 101L << 20, 5)]
    [InlineData(10L << 20, 50L << 20, 10L << 20, 1)]           // never below 1
    [InlineData(1L, 0L, 1L << 30, 1)]                          // no L2: one copy
    public void Rotation_count_follows_the_shared_rule(long bytesPerCopy, long l2, long free, int expected) =>
        Assert.Equal(expected, BenchMethod.Rotations(bytesPerCopy, l2, free));

    [Fact]
    public void Rotation_count_of_a_throughput_case_on_an_h200()
    {
        // b 128, s_q 1, h_q 16, s_k 4096, page 64, bf16: 8192 pages of 64 × 576, and q.
        var bytes = BenchMethod.BytesPerCopy(8192, 64, 1, 576, 128L * 1 * 16 * 576, 2);
        Assert.Equal((8192L * 64 * 576 + 128L * 16 * 576) * 2, bytes);
        Assert.Equal(1, BenchMethod.Rotations(bytes, 60L << 20, 140L << 30));
        Assert.Equal(8, BenchMethod.CallsPerGraph(1));

        // b 1, h_q 16, s_k 1024: 16 pages, about 1.2 MB a copy: 64 rotations, 64 calls.
        var small = BenchMethod.BytesPerCopy(16, 64, 1, 576, 16 * 576, 2);
        Assert.Equal(64, BenchMethod.Rotations(small, 60L << 20, 140L << 30));
        Assert.Equal(64, BenchMethod.CallsPerGraph(64));
    }

    [Theory]
    [InlineData(1, 8)]
    [InlineData(7, 8)]
    [InlineData(8, 8)]
    [InlineData(9, 9)]
    [InlineData(64, 64)]
    public void Calls_per_graph_are_max_of_rotations_and_8(int rotations, int expected) =>
        Assert.Equal(expected, BenchMethod.CallsPerGraph(rotations));

    [Fact]
    public void Graph_us_is_the_median_replay_time_per_call()
    {
        // 15 replays of 8 calls, 1..15 ms in a scrambled order: the median replay is 8 ms, 1000 µs per call.
        double[] replays = [9, 3, 15, 1, 8, 12, 2, 14, 5, 11, 4, 13, 7, 10, 6];
        Assert.Equal(1000.0, BenchMethod.GraphMicroseconds(replays, 8), 9);
        var perCall = BenchMethod.PerCallMicroseconds(replays, 8);
        Assert.Equal(1125.0, perCall[0], 9);
        Assert.Equal(125.0, perCall.Min(), 9);
        Assert.Equal(1875.0, perCall.Max(), 9);

        // An outlier moves the mean but not the median.
        replays[2] = 1000;
        Assert.Equal(1000.0, BenchMethod.GraphMicroseconds(replays, 8), 9);

        // For an even count the FlashMLA side takes sorted[n / 2], the upper of the two middle values.
        Assert.Equal(3000.0, BenchMethod.GraphMicroseconds([4, 1, 3, 2], 1), 9);
        Assert.Throws<ArgumentException>(() => BenchMethod.GraphMicroseconds([], 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => BenchMethod.GraphMicroseconds([1.0], 0));
    }

    [Fact]
    public void Method_constants_are_those_of_the_shared_method()
    {
        Assert.Equal(3, BenchMethod.WarmupReplays);
        Assert.Equal(15, BenchMethod.TimedReplays);
        Assert.Equal(64, BenchMethod.MaxRotations);
        Assert.Equal(8, BenchMethod.MinCallsPerGraph);
        Assert.Equal(4.0, BenchMethod.L2Multiple);
    }

    [Fact]
    public void Each_rotation_has_its_own_block_table_over_its_own_pages_in_random_order()
    {
        int[] pages = [3, 0, 2];
        const int rotations = 3, maxBlocks = 4, unused = -7;
        var random = new Random(11);
        var table = BenchMethod.BlockTables(pages, rotations, maxBlocks, unused, span => random.Shuffle(span));
        Assert.Equal(rotations * pages.Length * maxBlocks, table.Length);
        var orders = new List<int[]>();
        for (var r = 0; r < rotations; r++)
        {
            var used = new List<int>();
            for (var request = 0; request < pages.Length; request++)
            {
                for (var p = 0; p < maxBlocks; p++)
                {
                    var block = table[(((r * pages.Length) + request) * maxBlocks) + p];
                    if (p < pages[request])
                    {
                        used.Add(block);
                    }
                    else
                    {
                        Assert.Equal(unused, block);
                    }
                }
            }
            Assert.Equal(Enumerable.Range(r * 5, 5), used.Order());
            orders.Add([.. used.Select(b => b - (r * 5))]);
        }
        Assert.True(orders.Any(o => !o.SequenceEqual(orders[0])) || orders.Any(o => !o.SequenceEqual([0, 1, 2, 3, 4])));
    }

    [Fact]
    public void Bytes_use_the_element_size_of_the_dtype_and_the_mean_length()
    {
        var spec = new DecodeCaseSpec { Batch = 128, QueryLength = 1, QueryHeads = 16, KvHeads = 1, SeqlenK = 4096 };
        Assert.Equal(2, BenchFormulas.ElementSize(ElementType.BFloat16));
        Assert.Equal(2, BenchFormulas.ElementSize(ElementType.Float16));
        Assert.Equal(128.0 * ((16 * 576 * 2) + (4096.0 * 576 * 2) + (16 * 512 * 2)), BenchFormulas.Bytes(spec, 4096));
        Assert.Equal(2.0 * 128 * 16 * 4003.5 * 1088, BenchFormulas.Flops(spec, 4003.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => BenchFormulas.ElementSize((ElementType)99));
    }

    // ---- JSON records ------------------------------------------------------------------------

    private static BenchRunInfo SyntheticRun(int? clock) => new()
    {
        Gpu = "Test GPU",
        PciBusId = "0000:1b:00",
        ComputeCapability = "9.0",
        Multiprocessors = 132,
        L2Bytes = 60L << 20,
        CudaDriverVersion = "13.0",
        Commit = "abc1234",
        StartedUtc = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero),
        DriverVersion = clock is null ? null : "580.65.06",
        SmClockMhzStart = clock,
        SmClockMhzEnd = clock,
        SmClockMaxMhz = clock,
        ClockNote = clock is null ? "NVML unavailable: test" : null,
        CopyGBps = 4200,
        Cases = 1,
    };

    private static BenchRecord SyntheticRecord(int? clock) => new()
    {
        Case = new BenchCase
        {
            Name = "b128 s_q1 h16 s_k4096 fixed",
            Suite = "throughput",
            Spec = new DecodeCaseSpec { Batch = 128, QueryLength = 1, QueryHeads = 16, SeqlenK = 4096 },
            SeqLens = [.. Enumerable.Repeat(4096, 128)],
        },
        Backend = "cuda",
        KernelPath = "mma.sync sm_90a m16",
        Ms = 0.21,
        PlanMs = 0.03,
        GraphUs = 200,
        GraphUsMin = 199,
        GraphUsMax = 205,
        Rotations = 1,
        CallsPerGraph = 8,
        GraphReplays = 15,
        Iterations = 100,
        CopyGBps = 4200,
        SmClockMhz = clock,
        Gpu = "Test GPU",
        Commit = "abc1234",
    };

    [Theory]
    [InlineData(1980)]
    [InlineData(null)]
    public void Json_is_a_run_record_then_case_records_with_name_graph_us_ms_and_clocks(int? clock)
    {
        using var json = JsonDocument.Parse(BenchCommand.RenderRecords(SyntheticRun(clock), [SyntheticRecord(clock)]));
        var list = json.RootElement.EnumerateArray().ToArray();
        Assert.Equal(2, list.Length);

        var run = list[0];
        Assert.Equal("run", run.GetProperty("kind").GetString());
        Assert.False(run.TryGetProperty("name", out _));   // compare.py reads only records with a name
        Assert.Equal("13.0", run.GetProperty("cuda_driver_version").GetString());
        Assert.Equal(4200, run.GetProperty("copy_gbps").GetDouble());
        foreach (var field in (string[])["sm_clock_mhz_start", "sm_clock_mhz_end", "sm_clock_max_mhz", "driver_version"])
        {
            var value = run.GetProperty(field);
            Assert.Equal(clock is null ? JsonValueKind.Null : field == "driver_version" ? JsonValueKind.String : JsonValueKind.Number, value.ValueKind);
        }
        if (clock is null)
        {
            Assert.Contains("NVML", run.GetProperty("clock_note").GetString(), StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal(clock, run.GetProperty("sm_clock_mhz_start").GetInt32());
        }

        var record = list[1];
        Assert.Equal("b128 s_q1 h16 s_k4096 fixed", record.GetProperty("name").GetString());
        Assert.Equal("throughput", record.GetProperty("suite").GetString());
        Assert.Equal("flashmla.net", record.GetProperty("impl").GetString());
        Assert.Equal(200, record.GetProperty("graph_us").GetDouble());
        Assert.Equal(0.21, record.GetProperty("ms").GetDouble());
        Assert.Equal(0.03, record.GetProperty("plan_ms").GetDouble());
        Assert.Equal(4200, record.GetProperty("copy_gbps").GetDouble());
        Assert.Equal(1, record.GetProperty("rotations").GetInt32());
        Assert.Equal(8, record.GetProperty("calls_per_graph").GetInt32());
        Assert.Equal(15, record.GetProperty("graph_replays").GetInt32());
        Assert.Equal(clock is null ? JsonValueKind.Null : JsonValueKind.Number, record.GetProperty("sm_clock_mhz").ValueKind);

        // GB/s and TFLOPS come from graph_us; the ms_ figures from ms.
        var bytes = 128.0 * ((16 * 576 * 2) + (4096.0 * 576 * 2) + (16 * 512 * 2));
        var flops = 2.0 * 128 * 16 * 4096 * 1088;
        Assert.Equal(4096, record.GetProperty("mean_s_k").GetDouble());
        Assert.Equal(bytes / 200e-6 / 1e9, record.GetProperty("gbps").GetDouble(), 6);
        Assert.Equal(flops / 200e-6 / 1e12, record.GetProperty("tflops").GetDouble(), 9);
        Assert.Equal(bytes / 0.21e-3 / 1e9, record.GetProperty("ms_gbps").GetDouble(), 6);
        Assert.Equal(flops / 0.21e-3 / 1e12, record.GetProperty("ms_tflops").GetDouble(), 9);
        Assert.Equal(100 * (bytes / 200e-6 / 1e9) / 4200, record.GetProperty("gbps_pct_of_copy").GetDouble(), 6);
        foreach (var field in FieldsOfACase.Where(f => f != "seqlens" && f != "name"))
        {
            Assert.True(record.TryGetProperty(field, out _), field);
        }
    }

    [Fact]
    public void Json_without_graph_timing_has_null_graph_figures()
    {
        var record = SyntheticRecord(null) with { GraphUs = null, GraphUsMin = null, GraphUsMax = null, CallsPerGraph = 0, GraphReplays = 0 };
        using var json = JsonDocument.Parse(BenchCommand.RenderRecords(SyntheticRun(null), [record]));
        var r = json.RootElement[1];
        Assert.Equal(JsonValueKind.Null, r.GetProperty("graph_us").ValueKind);
        Assert.Equal(JsonValueKind.Null, r.GetProperty("gbps").ValueKind);
        Assert.Equal(JsonValueKind.Null, r.GetProperty("tflops").ValueKind);
        Assert.True(r.GetProperty("ms_gbps").GetDouble() > 0);
    }
}

/// <summary>A bench run on a cases file; skips with the reason where there is no GPU.</summary>
[Collection(GpuCollection.Name)]
public sealed class BenchGpuTests
{
    [Fact]
    public void Bench_runs_a_cases_file_and_records_the_shared_method()
    {
        if (!CudaSession.TryOpen(out var session, out var reason))
        {
            SkipReasons.SkipNoCudaDevice(reason);
        }
        session.Dispose();
        var dir = Directory.CreateTempSubdirectory("flashmla-bench-");
        try
        {
            var cases = Path.Combine(dir.FullName, "small.json");
            File.WriteAllText(cases, """
                [
                  {"name": "b2 h16 s_k300 var", "b": 2, "s_q": 1, "h_q": 16, "h_kv": 1, "s_k": 300, "varlen": true, "causal": false,
                   "page_block_size": 64, "dtype": "bf16", "seqlens": [450, 17]},
                  {"name": "b1 s_q2 h16 s_k128 fixed causal", "b": 1, "s_q": 2, "h_q": 16, "h_kv": 1, "s_k": 128, "varlen": false,
                   "causal": true, "page_block_size": 64, "dtype": "fp16", "seqlens": [128]}
                ]
                """);
            var output = Path.Combine(dir.FullName, "out.json");
            using var stdout = new StringWriter();
            using var stderr = new StringWriter();
            var code = CliApp.Run(["bench", "--cases", cases, "--iters", "5", "--warmup", "1", "--format", "json", "--output", output], stdout, stderr);
            Assert.True(code == 0, stderr.ToString());
            Assert.Equal(stdout.ToString(), File.ReadAllText(output));
            using var json = JsonDocument.Parse(stdout.ToString());
            var list = json.RootElement.EnumerateArray().ToArray();
            Assert.Equal(3, list.Length);
            Assert.Equal("run", list[0].GetProperty("kind").GetString());
            Assert.True(list[0].GetProperty("copy_gbps").GetDouble() > 0);
            Assert.True(list[0].TryGetProperty("sm_clock_mhz_start", out _));
            Assert.Equal(["b2 h16 s_k300 var", "b1 s_q2 h16 s_k128 fixed causal"], list.Skip(1).Select(r => r.GetProperty("name").GetString()));
            foreach (var r in list.Skip(1))
            {
                Assert.Equal("small", r.GetProperty("suite").GetString());
                Assert.True(r.GetProperty("graph_us").GetDouble() > 0);
                Assert.True(r.GetProperty("ms").GetDouble() > 0);
                Assert.True(r.GetProperty("plan_ms").GetDouble() > 0);
                Assert.Equal(64, r.GetProperty("rotations").GetInt32());   // tiny cases: the cap
                Assert.Equal(64, r.GetProperty("calls_per_graph").GetInt32());
                Assert.True(r.TryGetProperty("sm_clock_mhz", out _));
            }
            Assert.Equal(233.5, list[1].GetProperty("mean_s_k").GetDouble());
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
