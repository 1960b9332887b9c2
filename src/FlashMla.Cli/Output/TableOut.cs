using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace FlashMla.Cli.Output;

/// <summary>Small helpers for Spectre tables: plain (non-markup) cells and number formatting.</summary>
internal static class TableOut
{
    public static Table Create(params string[] columns)
    {
        var table = new Table().Border(TableBorder.Rounded);
        foreach (var column in columns)
        {
            table.AddColumn(new TableColumn(new Text(column)));
        }
        return table;
    }

    public static void Row(this Table table, params string[] cells)
    {
        var renderables = new IRenderable[cells.Length];
        for (var i = 0; i < cells.Length; i++)
        {
            renderables[i] = new Text(cells[i]);
        }
        table.AddRow(renderables);
    }

    public static void RowStyled(this Table table, Style style, params string[] cells)
    {
        var renderables = new IRenderable[cells.Length];
        for (var i = 0; i < cells.Length; i++)
        {
            renderables[i] = new Text(cells[i], style);
        }
        table.AddRow(renderables);
    }

    public static string F(double value, int decimals = 3) =>
        double.IsFinite(value) ? value.ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)
            : value.ToString(CultureInfo.InvariantCulture);

    public static string E(double value) => value.ToString("0.###e+0", CultureInfo.InvariantCulture);

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => F(bytes / (double)(1L << 30), 2) + " GiB",
        >= 1L << 20 => F(bytes / (double)(1L << 20), 1) + " MiB",
        >= 1L << 10 => F(bytes / 1024.0, 1) + " KiB",
        _ => bytes.ToString(CultureInfo.InvariantCulture) + " B",
    };

    public static string Shape(params ReadOnlySpan<long> dims)
    {
        var parts = new string[dims.Length];
        for (var i = 0; i < dims.Length; i++)
        {
            parts[i] = dims[i].ToString(CultureInfo.InvariantCulture);
        }
        return "[" + string.Join(", ", parts) + "]";
    }
}
