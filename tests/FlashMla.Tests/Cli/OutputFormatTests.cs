using System.Text.Json;
using FlashMla.Cli;
using FlashMla.Cli.Output;

namespace FlashMla.Tests.Cli;

/// <summary>The formats of every command's --format: one report, written by one formatter per format.</summary>
public sealed class OutputFormatTests
{
    private static (int ExitCode, string Out, string Err) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static Report Sample()
    {
        var report = new Report();
        report.Note("# a note that would be a heading");
        var table = report.Table("cases", "name", "value");
        table.Row("plain", "1.5");
        table.FlaggedRow("with, comma | pipe", "say \"hi\"");
        report.Block("log", "line 1\nline 2\n");
        return report;
    }

    /// <summary>A CSV parser (RFC 4180), independent of the formatter: fields of each line.</summary>
    private static List<List<string>> ParseCsv(string text)
    {
        var rows = new List<List<string>>();
        var row = new List<string>();
        var field = new System.Text.StringBuilder();
        var quoted = false;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"')
                {
                    field.Append('"');
                    i++;
                }
                else if (c == '"')
                {
                    quoted = false;
                }
                else
                {
                    field.Append(c);
                }
            }
            else if (c == '"')
            {
                quoted = true;
            }
            else if (c == ',')
            {
                row.Add(field.ToString());
                field.Clear();
            }
            else if (c == '\n')
            {
                row.Add(field.ToString());
                field.Clear();
                rows.Add(row);
                row = [];
            }
            else if (c != '\r')
            {
                field.Append(c);
            }
        }
        return rows;
    }

    [Fact]
    public void Csv_quotes_what_needs_quoting_and_keeps_notes_off_standard_output()
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        ReportFormatters.For(OutputFormat.Csv).Write(new CliContext(stdout, stderr), Sample());
        var rows = ParseCsv(stdout.ToString());
        Assert.Equal(
            [["name", "value"], ["plain", "1.5"], ["with, comma | pipe", "say \"hi\""]],
            rows);
        Assert.Contains("# a note", stderr.ToString(), StringComparison.Ordinal);
        Assert.Contains("line 2", stderr.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Markdown_writes_pipe_tables_with_escaped_cells()
    {
        var text = ReportFormatters.Render(Sample(), OutputFormat.Markdown);
        var lines = text.Split('\n');
        Assert.Contains("\\# a note that would be a heading", lines);
        Assert.Contains("**cases**", lines);
        Assert.Contains("| name | value |", lines);
        Assert.Contains("| --- | --- |", lines);
        Assert.Contains("| with, comma \\| pipe | say \"hi\" |", lines);
        Assert.Contains("```", lines);
        // Every table line has as many unescaped pipes as a row of two cells.
        foreach (var line in lines.Where(l => l.StartsWith('|')))
        {
            Assert.Equal(3, line.Replace("\\|", "", StringComparison.Ordinal).Count(c => c == '|'));
        }
    }

    [Theory]
    [InlineData("table")]
    [InlineData("markdown")]
    [InlineData("csv")]
    [InlineData("json")]
    public void Decode_writes_every_format(string format)
    {
        var (code, output, error) = Run("decode", "--backend", "cpu", "--batch", "1", "--seqlen", "64", "--heads", "16", "--repeat", "3", "--format", format);
        Assert.True(code == 0, error);
        switch (format)
        {
            case "json":
                using (var json = JsonDocument.Parse(output))
                {
                    var root = json.RootElement;
                    Assert.Equal(3, root.GetProperty("repeat").GetInt32());
                    Assert.Equal(1, root.GetProperty("warmup").GetInt32());
                    var ms = root.GetProperty("ms").GetDouble();
                    Assert.InRange(ms, root.GetProperty("warm_ms_min").GetDouble(), root.GetProperty("warm_ms_max").GetDouble());
                    Assert.True(root.GetProperty("cold_ms").GetDouble() > 0);
                }
                break;
            case "csv":
                var rows = ParseCsv(output);
                Assert.Equal(["item", "value"], rows[0]);
                Assert.All(rows, r => Assert.Equal(2, r.Count));
                Assert.Contains(rows, r => r[0] == "q" && r[1] == "[1, 1, 16, 576]");
                Assert.Contains(rows, r => r[0] == "time (warm)" && r[1].Contains("median of 3 calls", StringComparison.Ordinal));
                Assert.Contains(rows, r => r[0] == "time (cold)");
                break;
            case "markdown":
                Assert.StartsWith("| item | value |\n| --- | --- |\n", output.ReplaceLineEndings("\n"), StringComparison.Ordinal);
                Assert.Contains("| q | [1, 1, 16, 576] |", output, StringComparison.Ordinal);
                Assert.Contains("| time (warm) |", output, StringComparison.Ordinal);
                break;
            default:
                Assert.Contains("time (warm)", output, StringComparison.Ordinal);
                Assert.Contains("time (cold)", output, StringComparison.Ordinal);
                break;
        }
    }

    [Theory]
    [InlineData("markdown")]
    [InlineData("csv")]
    public void Info_and_verify_accept_the_formats(string format)
    {
        var info = Run("info", "--format", format);
        Assert.Equal(0, info.ExitCode);

        var verify = Run("verify", "--backend", "cpu", "--quick", "--format", format);
        Assert.True(verify.ExitCode == 0, verify.Err);
        var lines = verify.Out.ReplaceLineEndings("\n").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (format == "csv")
        {
            var rows = ParseCsv(verify.Out);
            Assert.Equal("#", rows[0][0]);
            Assert.All(rows, r => Assert.Equal(rows[0].Count, r.Count));
            Assert.All(rows.Skip(1), r => Assert.Equal("PASS", r[^1]));
            Assert.Contains("passed, 0 failed", verify.Err, StringComparison.Ordinal);
        }
        else
        {
            Assert.StartsWith("| # | case |", lines[0], StringComparison.Ordinal);
            Assert.Contains(lines, l => l.StartsWith("verify cpu:", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Decode_repeat_is_bounded()
    {
        Assert.Equal(2, Run("decode", "--repeat", "0").ExitCode);
        Assert.Equal(2, Run("decode", "--repeat", "2147483647").ExitCode);
        Assert.Equal(2, Run("decode", "--format", "yaml").ExitCode);
    }
}
