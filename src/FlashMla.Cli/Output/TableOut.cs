using System.Globalization;

namespace FlashMla.Cli.Output;

/// <summary>Number, size and shape formatting of the text outputs.</summary>
internal static class TableOut
{
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
