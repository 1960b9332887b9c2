namespace FlashMla.Cli.Output;

/// <summary>The <c>--format</c> of every command: a terminal table, JSON, a Markdown table or CSV.</summary>
internal enum OutputFormat
{
    Table,
    Json,
    Markdown,
    Csv,
}

/// <summary>The names of <see cref="OutputFormat"/> on the command line.</summary>
internal static class OutputFormats
{
    /// <summary>All names, in the order help lists them.</summary>
    public static readonly string[] Names = ["table", "json", "markdown", "csv"];

    public static OutputFormat Parse(string? name) => name switch
    {
        "json" => OutputFormat.Json,
        "markdown" => OutputFormat.Markdown,
        "csv" => OutputFormat.Csv,
        _ => OutputFormat.Table,
    };
}
