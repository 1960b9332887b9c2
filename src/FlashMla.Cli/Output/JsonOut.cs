using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace FlashMla.Cli.Output;

/// <summary>Writes JSON documents with <see cref="Utf8JsonWriter"/>; non-finite numbers become null.</summary>
internal static class JsonOut
{
    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Indented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Renders a JSON document built by <paramref name="write"/> to a string (ends with a newline).</summary>
    public static string Render(Action<Utf8JsonWriter> write)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, WriterOptions))
        {
            write(writer);
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    public static void Number(this Utf8JsonWriter writer, string name, double value)
    {
        if (double.IsFinite(value))
        {
            writer.WriteNumber(name, value);
        }
        else
        {
            writer.WriteNull(name);
        }
    }

    public static void NumberOrNull(this Utf8JsonWriter writer, string name, double? value)
    {
        if (value is { } v)
        {
            writer.Number(name, v);
        }
        else
        {
            writer.WriteNull(name);
        }
    }

    public static void Shape(this Utf8JsonWriter writer, string name, params ReadOnlySpan<long> dims)
    {
        writer.WriteStartArray(name);
        foreach (var d in dims)
        {
            writer.WriteNumberValue(d);
        }
        writer.WriteEndArray();
    }
}
