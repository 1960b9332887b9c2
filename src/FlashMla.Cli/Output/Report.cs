namespace FlashMla.Cli.Output;

/// <summary>A table of a report: a title, columns and rows of plain text; a row may be flagged (a failure, shown in red on a terminal).</summary>
internal sealed class ResultTable
{
    private readonly List<(string[] Cells, bool Flagged)> _rows = [];

    public ResultTable(string? title, params string[] columns)
    {
        ArgumentNullException.ThrowIfNull(columns);
        Title = title;
        Columns = columns;
    }

    public string? Title { get; }

    public IReadOnlyList<string> Columns { get; }

    public IReadOnlyList<(string[] Cells, bool Flagged)> Rows => _rows;

    public void Row(params string[] cells) => Add(cells, flagged: false);

    public void FlaggedRow(params string[] cells) => Add(cells, flagged: true);

    private void Add(string[] cells, bool flagged)
    {
        ArgumentNullException.ThrowIfNull(cells);
        if (cells.Length != Columns.Count)
        {
            throw new ArgumentException($"a row of {cells.Length} cells in a table of {Columns.Count} columns", nameof(cells));
        }
        _rows.Add((cells, flagged));
    }
}

/// <summary>
/// What a command prints in the table, Markdown and CSV formats: notes (lines of text) and tables,
/// in order. One <see cref="IReportFormatter"/> per format writes it; JSON is each command's own
/// document.
/// </summary>
internal sealed class Report
{
    private readonly List<object> _parts = [];

    /// <summary>The notes (<see cref="string"/>) and tables (<see cref="ResultTable"/>), in order.</summary>
    public IReadOnlyList<object> Parts => _parts;

    /// <summary>A line of text.</summary>
    public void Note(string line) => _parts.Add(line);

    /// <summary>A preformatted block (a log), kept as it is.</summary>
    public void Block(string title, string text) => _parts.Add(new PreformattedBlock(title, text));

    /// <summary>Adds a table and returns it for its rows.</summary>
    public ResultTable Table(string? title, params string[] columns)
    {
        var table = new ResultTable(title, columns);
        _parts.Add(table);
        return table;
    }

    /// <summary>Writes the report in <paramref name="format"/> (not JSON).</summary>
    public void Write(CliContext context, OutputFormat format) => ReportFormatters.For(format).Write(context, this);
}

/// <summary>A titled block of text written as it is (a JIT log).</summary>
internal sealed record PreformattedBlock(string Title, string Text);
