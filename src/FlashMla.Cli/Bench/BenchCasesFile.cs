using System.Globalization;
using System.Text.Json;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Cli.Bench;

/// <summary>
/// Reads a cases file in the shared format (../shared/bench/cases/*.json): a JSON list of objects
/// with name, b, s_q, h_q, h_kv, s_k, varlen, causal, page_block_size, dtype (optional, "bf16"
/// when absent) and seqlens (the b per-request lengths). Other fields are ignored. Every error is
/// a <see cref="CliUsageException"/> (exit code 2) that names the file, the case and the field.
/// </summary>
internal static class BenchCasesFile
{
    /// <summary>Reads and validates <paramref name="path"/>; the suite of its cases is the file name without extension.</summary>
    public static IReadOnlyList<BenchCase> Load(string path, int seed)
    {
        ArgumentNullException.ThrowIfNull(path);
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new CliUsageException($"--cases {path}: cannot read the file: {e.Message}");
        }
        return Parse(text, path, Path.GetFileNameWithoutExtension(path), seed);
    }

    /// <summary>Parses the text of a cases file; <paramref name="source"/> names it in errors.</summary>
    public static IReadOnlyList<BenchCase> Parse(string json, string source, string suite, int seed)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new CliUsageException($"--cases {source}: not valid JSON: {e.Message}");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Array)
            {
                throw new CliUsageException($"--cases {source}: expected a JSON list of cases, found {Kind(root)}");
            }
            if (root.GetArrayLength() == 0)
            {
                throw new CliUsageException($"--cases {source}: the list of cases is empty");
            }

            var cases = new List<BenchCase>();
            var names = new Dictionary<string, int>(StringComparer.Ordinal);
            var index = 0;
            foreach (var element in root.EnumerateArray())
            {
                var item = ParseCase(element, new Where(source, index), suite, seed);
                if (names.TryGetValue(item.Name, out var first))
                {
                    throw new CliUsageException(
                        $"--cases {source}: case [{index}] \"{item.Name}\": field \"name\" repeats the name of case [{first}]; results are matched by name");
                }
                names.Add(item.Name, index);
                cases.Add(item);
                index++;
            }
            return cases;
        }
    }

    private static BenchCase ParseCase(JsonElement element, Where where, string suite, int seed)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw where.Error($"expected an object, found {Kind(element)}");
        }

        // The name first, so that the other errors can quote it.
        var nameElement = Required(element, "name", where);
        if (nameElement.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(nameElement.GetString()))
        {
            throw where.Field("name", $"must be a non-empty string, got {Show(nameElement)}");
        }
        var name = nameElement.GetString()!;
        where = where with { Name = name };

        var batch = Int(element, "b", 1, where);
        var seqQ = Int(element, "s_q", 1, where);
        var headsQ = Int(element, "h_q", 1, where);
        var headsKv = Int(element, "h_kv", 1, where);
        var seqLenK = Int(element, "s_k", 0, where);
        var varlen = Bool(element, "varlen", where);
        var causal = Bool(element, "causal", where);
        var pageSize = Int(element, "page_block_size", 1, where);
        if (headsQ % headsKv != 0)
        {
            throw where.Field("h_kv", $"must divide h_q ({headsQ}), got {headsKv}");
        }

        var dtype = ElementType.BFloat16;
        if (element.TryGetProperty("dtype", out var dtypeElement))
        {
            if (dtypeElement.ValueKind != JsonValueKind.String || !ElementTypes.TryParse(dtypeElement.GetString(), out dtype))
            {
                throw where.Field("dtype", $"must be {string.Join(" or ", ElementTypes.All.Select(t => $"\"{t.ShortName()}\""))}, got {Show(dtypeElement)}");
            }
        }

        var seqlensElement = Required(element, "seqlens", where);
        if (seqlensElement.ValueKind != JsonValueKind.Array)
        {
            throw where.Field("seqlens", $"must be a list of b ({batch}) lengths, got {Show(seqlensElement)}");
        }
        if (seqlensElement.GetArrayLength() != batch)
        {
            throw where.Field("seqlens", $"must hold b ({batch}) lengths, got {seqlensElement.GetArrayLength()}");
        }
        var seqlens = new int[batch];
        var i = 0;
        foreach (var length in seqlensElement.EnumerateArray())
        {
            if (length.ValueKind != JsonValueKind.Number || !length.TryGetInt32(out var value) || value < 0)
            {
                throw where.Field("seqlens", $"entry [{i}] must be an integer in [0, {int.MaxValue}], got {Show(length)}");
            }
            if (!varlen && value != seqLenK)
            {
                throw where.Field("seqlens", $"entry [{i}] is {value}, but the case has fixed lengths (varlen false) of s_k {seqLenK}");
            }
            seqlens[i++] = value;
        }

        var spec = new DecodeCaseSpec
        {
            Batch = batch,
            QueryLength = seqQ,
            QueryHeads = headsQ,
            KvHeads = headsKv,
            SeqlenK = seqLenK,
            Varlen = varlen,
            Causal = causal,
            PageBlockSize = pageSize,
            ElementType = dtype,
            Seed = seed,
        };
        var names = ShapeNames.CaseFields(where.Case);
        CaseBudget.CheckBenchHost(spec, seqlens, names, BenchSuites.Defaults, CaseBudget.HostBudgetBytes);
        return new BenchCase
        {
            Name = name,
            Suite = suite,
            Spec = spec,
            SeqLens = seqlens,
            Names = names,
        };
    }

    private static JsonElement Required(JsonElement element, string field, Where where) =>
        element.TryGetProperty(field, out var value) ? value : throw where.Field(field, "is missing");

    private static int Int(JsonElement element, string field, int min, Where where)
    {
        var value = Required(element, field, where);
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var result) || result < min)
        {
            throw where.Field(field, $"must be an integer >= {min.ToString(CultureInfo.InvariantCulture)}, got {Show(value)}");
        }
        return result;
    }

    private static bool Bool(JsonElement element, string field, Where where)
    {
        var value = Required(element, field, where);
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw where.Field(field, $"must be true or false, got {Show(value)}"),
        };
    }

    /// <summary>A JSON value as it appears in the file, shortened.</summary>
    private static string Show(JsonElement value)
    {
        var text = value.GetRawText();
        return text.Length <= 40 ? text : string.Concat(text.AsSpan(0, 37), "...");
    }

    private static string Kind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "a list",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => value.ValueKind.ToString(),
    };

    /// <summary>Where in the file an error is: the file, the index of the case and, once read, its name.</summary>
    private readonly record struct Where(string Source, int Index, string? Name = null)
    {
        public string Case => Name is null
            ? $"--cases {Source}: case [{Index.ToString(CultureInfo.InvariantCulture)}]"
            : $"--cases {Source}: case [{Index.ToString(CultureInfo.InvariantCulture)}] \"{Name}\"";

        public CliUsageException Error(string message) => new($"{Case}: {message}");

        public CliUsageException Field(string field, string message) => new($"{Case}: field \"{field}\" {message}");
    }
}
