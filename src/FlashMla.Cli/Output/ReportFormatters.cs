using System.Text;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace FlashMla.Cli.Output;

/// <summary>Writes a <see cref="Report"/> in one output format.</summary>
internal interface IReportFormatter
{
    void Write(CliContext context, Report report);
}

/// <summary>The formatter of each format that is not JSON.</summary>
internal static class ReportFormatters
{
    public static IReportFormatter For(OutputFormat format) => format switch
    {
        OutputFormat.Table => TerminalFormatter.Instance,
        OutputFormat.Markdown => MarkdownFormatter.Instance,
        OutputFormat.Csv => CsvFormatter.Instance,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "JSON is written by each command"),
    };

    /// <summary>Renders a report to a string, as it would go to standard output (for tests and files).</summary>
    public static string Render(Report report, OutputFormat format)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        For(format).Write(new CliContext(stdout, stderr), report);
        return stdout.ToString();
    }
}

/// <summary>Notes as lines; tables drawn with Spectre (rounded borders); flagged rows in red.</summary>
internal sealed class TerminalFormatter : IReportFormatter
{
    public static readonly TerminalFormatter Instance = new();

    public void Write(CliContext context, Report report)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(report);
        foreach (var part in report.Parts)
        {
            switch (part)
            {
                case string note:
                    context.Out.WriteLine(note);
                    break;
                case PreformattedBlock block:
                    context.Out.WriteLine(block.Title + ":");
                    context.Out.WriteLine(block.Text);
                    break;
                case ResultTable table:
                    if (table.Title is { } title)
                    {
                        context.Out.WriteLine(title);
                    }
                    context.OutConsole.Write(ToSpectre(table));
                    break;
            }
        }
    }

    private static Table ToSpectre(ResultTable table)
    {
        var spectre = new Table().Border(TableBorder.Rounded);
        foreach (var column in table.Columns)
        {
            spectre.AddColumn(new TableColumn(new Text(column)));
        }
        var red = new Style(Color.Red);
        foreach (var (cells, flagged) in table.Rows)
        {
            var renderables = new IRenderable[cells.Length];
            for (var i = 0; i < cells.Length; i++)
            {
                renderables[i] = flagged ? new Text(cells[i], red) : new Text(cells[i]);
            }
            spectre.AddRow(renderables);
        }
        return spectre;
    }
}

/// <summary>
/// GitHub-flavoured Markdown: notes as paragraphs, a table's title as bold text above it, tables
/// as pipe tables (a '|' in a cell escaped), logs as fenced blocks. Flagged rows are not marked
/// beyond their own cells (which say FAIL).
/// </summary>
internal sealed class MarkdownFormatter : IReportFormatter
{
    public static readonly MarkdownFormatter Instance = new();

    public void Write(CliContext context, Report report)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(report);
        var first = true;
        foreach (var part in report.Parts)
        {
            if (!first)
            {
                context.Out.WriteLine();
            }
            first = false;
            switch (part)
            {
                case string note:
                    context.Out.WriteLine(Escape(note));
                    break;
                case PreformattedBlock block:
                    context.Out.WriteLine($"**{Escape(block.Title)}**");
                    context.Out.WriteLine();
                    context.Out.WriteLine("```");
                    context.Out.WriteLine(block.Text.TrimEnd('\n'));
                    context.Out.WriteLine("```");
                    break;
                case ResultTable table:
                    if (table.Title is { } title)
                    {
                        context.Out.WriteLine($"**{Escape(title)}**");
                        context.Out.WriteLine();
                    }
                    context.Out.WriteLine(Line(table.Columns));
                    context.Out.WriteLine(Line(table.Columns.Select(_ => "---")));
                    foreach (var (cells, _) in table.Rows)
                    {
                        context.Out.WriteLine(Line(cells));
                    }
                    break;
            }
        }
    }

    private static string Line(IEnumerable<string> cells) => "| " + string.Join(" | ", cells.Select(Cell)) + " |";

    /// <summary>A cell: '|' and '\' escaped, line breaks as spaces.</summary>
    internal static string Cell(string text) =>
        text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("|", "\\|", StringComparison.Ordinal)
            .Replace("\r", "", StringComparison.Ordinal).Replace('\n', ' ');

    /// <summary>A note: the characters that would start Markdown markup at the beginning of a line, escaped.</summary>
    private static string Escape(string text) =>
        text.Length > 0 && "#>*-+|".Contains(text[0], StringComparison.Ordinal) ? "\\" + text : text;
}

/// <summary>
/// CSV (RFC 4180): each table as a header line and one line per row, a field quoted when it holds a
/// comma, a quote or a line break; tables separated by an empty line. Standard output holds only
/// the tables, so that it parses as CSV: notes, titles and logs go to standard error.
/// </summary>
internal sealed class CsvFormatter : IReportFormatter
{
    public static readonly CsvFormatter Instance = new();

    public void Write(CliContext context, Report report)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(report);
        var tables = 0;
        foreach (var part in report.Parts)
        {
            switch (part)
            {
                case string note:
                    context.Error.WriteLine(note);
                    break;
                case PreformattedBlock block:
                    context.Error.WriteLine(block.Title + ":");
                    context.Error.WriteLine(block.Text);
                    break;
                case ResultTable table:
                    if (tables++ > 0)
                    {
                        context.Out.WriteLine();
                    }
                    if (table.Title is { } title)
                    {
                        context.Error.WriteLine($"table {tables}: {title}");
                    }
                    context.Out.WriteLine(Line(table.Columns));
                    foreach (var (cells, _) in table.Rows)
                    {
                        context.Out.WriteLine(Line(cells));
                    }
                    break;
            }
        }
    }

    private static string Line(IEnumerable<string> fields) => string.Join(',', fields.Select(Field));

    internal static string Field(string text)
    {
        if (text.AsSpan().IndexOfAny(",\"\r\n") < 0)
        {
            return text;
        }
        var quoted = new StringBuilder(text.Length + 2);
        quoted.Append('"').Append(text.Replace("\"", "\"\"", StringComparison.Ordinal)).Append('"');
        return quoted.ToString();
    }
}
