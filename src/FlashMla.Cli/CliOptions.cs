using System.CommandLine;
using System.CommandLine.Parsing;
using FlashMla.Cli.Output;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace FlashMla.Cli;

/// <summary>Option factories shared by the commands.</summary>
internal static class CliOptions
{
    public static Option<string> Format()
    {
        var option = new Option<string>("--format")
        {
            Description = "Output format on standard output: a table, JSON, a Markdown table, or CSV (tables only; notes go to standard error)",
            DefaultValueFactory = _ => "table",
            HelpName = string.Join('|', OutputFormats.Names),
        };
        option.AcceptOnlyFromAmong(OutputFormats.Names);
        return option;
    }

    public static OutputFormat GetFormat(ParseResult parseResult, Option<string> option) => OutputFormats.Parse(parseResult.GetValue(option));

    /// <summary>The option's value, or false when its token does not convert (the parser reports that itself).</summary>
    public static bool TryGetValue<T>(SymbolResult result, Option<T> option, out T? value)
    {
        ArgumentNullException.ThrowIfNull(result);
        try
        {
            value = result.GetValue(option);
            return true;
        }
        catch (InvalidOperationException)
        {
            value = default;
            return false;
        }
    }

    public static Option<string> Backend(string defaultValue, params string[] allowed)
    {
        var option = new Option<string>("--backend")
        {
            Description = "Backend: " + string.Join(", ", allowed) +
                (allowed.Contains("auto") ? " (auto = CUDA when a device is present, else CPU)" : ""),
            DefaultValueFactory = _ => defaultValue,
            HelpName = string.Join('|', allowed),
        };
        option.AcceptOnlyFromAmong(allowed);
        return option;
    }

    /// <summary>The most timed or warm-up iterations an option accepts (each iteration holds a pair of events).</summary>
    public const int MaxIterations = 100_000;

    public static Option<int> Int(string name, string description, int defaultValue, int min, string? alias = null, int max = int.MaxValue)
    {
        var option = alias is null ? new Option<int>(name) : new Option<int>(name, alias);
        option.Description = description;
        option.DefaultValueFactory = _ => defaultValue;
        option.Validators.Add(result =>
        {
            if (TryGetValue(result, option, out var value) && (value < min || value > max))
            {
                result.AddError(max == int.MaxValue
                    ? $"{name} must be >= {min} (got {value})"
                    : $"{name} must be in [{min}, {max}] (got {value})");
            }
        });
        return option;
    }
}

/// <summary>The shape options of <c>decode</c> and <c>bench</c>: one decode problem.</summary>
internal sealed class ShapeOptions
{
    public ShapeOptions(DecodeCaseSpec defaults)
    {
        Batch = CliOptions.Int("--batch", "Batch size b (number of requests)", defaults.Batch, 1, "-b");
        SeqLen = CliOptions.Int("--seqlen", "KV length s_k of every request (the mean with --varlen)", defaults.SeqlenK, 0);
        Varlen = new Option<bool>("--varlen") { Description = "Variable lengths: max(N(s_k, s_k/2), s_q) per request" };
        Heads = CliOptions.Int("--heads", "Query heads h_q", defaults.QueryHeads, 1);
        KvHeads = CliOptions.Int("--kv-heads", "KV heads h_kv (h_q must be a multiple)", defaults.KvHeads, 1);
        SeqQ = CliOptions.Int("--sq", "Query tokens per request s_q", defaults.QueryLength, 1);
        PageSize = CliOptions.Int("--page-size", "KV cache page (block) size in tokens", defaults.PageBlockSize, 1);
        Dtype = new Option<string>("--dtype")
        {
            Description = "Element type of q, k_cache and the output",
            DefaultValueFactory = _ => defaults.ElementType.ShortName(),
            HelpName = string.Join('|', ElementTypes.All.Select(t => t.ShortName())),
        };
        Dtype.AcceptOnlyFromAmong([.. ElementTypes.All.Select(t => t.ShortName())]);
        Causal = new Option<bool>("--causal") { Description = "Causal mask among the s_q query tokens" };
        Seed = new Option<int>("--seed") { Description = "Random seed of the inputs", DefaultValueFactory = _ => defaults.Seed };
    }

    public Option<int> Batch { get; }
    public Option<int> SeqLen { get; }
    public Option<bool> Varlen { get; }
    public Option<int> Heads { get; }
    public Option<int> KvHeads { get; }
    public Option<int> SeqQ { get; }
    public Option<int> PageSize { get; }
    public Option<string> Dtype { get; }
    public Option<bool> Causal { get; }
    public Option<int> Seed { get; }

    public void AddTo(Command command)
    {
        command.Options.Add(Batch);
        command.Options.Add(SeqLen);
        command.Options.Add(Varlen);
        command.Options.Add(Heads);
        command.Options.Add(KvHeads);
        command.Options.Add(SeqQ);
        command.Options.Add(PageSize);
        command.Options.Add(Dtype);
        command.Options.Add(Causal);
        command.Options.Add(Seed);
        command.Validators.Add(ValidateHeads);
    }

    public DecodeCaseSpec Read(ParseResult parseResult) => new()
    {
        Batch = parseResult.GetValue(Batch),
        SeqlenK = parseResult.GetValue(SeqLen),
        Varlen = parseResult.GetValue(Varlen),
        QueryHeads = parseResult.GetValue(Heads),
        KvHeads = parseResult.GetValue(KvHeads),
        QueryLength = parseResult.GetValue(SeqQ),
        PageBlockSize = parseResult.GetValue(PageSize),
        ElementType = ParseDtype(parseResult.GetValue(Dtype)),
        Causal = parseResult.GetValue(Causal),
        Seed = parseResult.GetValue(Seed),
    };

    private static ElementType ParseDtype(string? name) =>
        ElementTypes.TryParse(name, out var type)
            ? type
            : throw new CliUsageException($"unknown dtype '{name}' (expected {string.Join(" or ", ElementTypes.All.Select(t => t.ShortName()))})");

    private void ValidateHeads(CommandResult result)
    {
        if (CliOptions.TryGetValue(result, Heads, out var heads) && CliOptions.TryGetValue(result, KvHeads, out var kvHeads) &&
            heads >= 1 && kvHeads >= 1 && heads % kvHeads != 0)
        {
            result.AddError($"--heads ({heads}) must be a multiple of --kv-heads ({kvHeads})");
        }
    }
}
