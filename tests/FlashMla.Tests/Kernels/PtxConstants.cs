using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using FlashMla.Kernels;

namespace FlashMla.Tests.Kernels;

/// <summary>
/// Reads the initialised constants of a PTX module (<c>.visible .const .align 4 .b8 name[n] = {…};</c>)
/// from its text, so that the tests see what the kernels export (descriptors, ABI layouts)
/// without a GPU. PTX leaves out trailing zero bytes of an initialiser.
/// </summary>
internal static partial class PtxConstants
{
    /// <summary>Every byte-initialised constant of the module, by name.</summary>
    public static IReadOnlyDictionary<string, byte[]> Read(string ptx)
    {
        var result = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (Match m in ConstantPattern().Matches(ptx))
        {
            var bytes = new byte[int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)];
            if (m.Groups[3].Success)
            {
                var values = m.Groups[3].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
                for (var i = 0; i < values.Length; i++)
                {
                    bytes[i] = byte.Parse(values[i], CultureInfo.InvariantCulture);
                }
            }

            result.Add(m.Groups[1].Value, bytes);
        }

        return result;
    }

    /// <summary>The descriptors of every entry of an embedded module, read from its PTX text.</summary>
    public static KernelDescriptor[] Descriptors(string target, string module)
    {
        var ptx = KernelLibrary.ReadPtx(target, module) ?? throw new InvalidOperationException($"{target}/{module} is not embedded");
        var constants = Read(ptx);
        return [.. KernelLibrary.EntryNames(ptx).Select(e => KernelDescriptor.Parse(constants[KernelDescriptor.GlobalPrefix + e], module, e, target))];
    }

    /// <summary>Decodes an exported ABI layout (<c>AbiLayout</c> of kernels/include/kernel_desc.cuh).</summary>
    public static AbiLayout ReadLayout(string name, byte[] bytes)
    {
        int Int(int index) => BitConverter.ToInt32(bytes, 4 * index);
        Assert.True(Int(0) == 0x414c4d46, $"{name} does not start with the ABI magic");
        var size = Int(2);
        var count = Int(3);
        var namesBytes = Int(4);
        var names = Encoding.ASCII.GetString(bytes, 4 * (5 + (2 * count)), namesBytes).TrimEnd('\0').Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(names.Length == count, $"{name}: {count} fields but {names.Length} names");
        var fields = new AbiField[count];
        for (var i = 0; i < count; i++)
        {
            fields[i] = new AbiField(names[i], Int(5 + i), Int(5 + count + i));
        }

        return new AbiLayout(name, Int(1), size, fields);
    }

    [GeneratedRegex(@"^\.visible \.(?:const|global) \.align \d+ \.b8 (\w+)\[(\d+)\](?: = \{([^}]*)\})?;", RegexOptions.Multiline)]
    private static partial Regex ConstantPattern();
}

/// <summary>One field of an exported layout.</summary>
internal sealed record AbiField(string Name, int Offset, int Size);

/// <summary>An exported layout: the struct's name, the ABI version, its size and its fields in order.</summary>
internal sealed record AbiLayout(string Struct, int AbiVersion, int Size, IReadOnlyList<AbiField> Fields);
