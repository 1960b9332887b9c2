using System.Text.RegularExpressions;
using FlashMla.Kernels;

namespace FlashMla.Tests;

/// <summary>
/// The library's folders are its layers (docs/architecture.md, "Layers"): each may use only the
/// layers below it. Checked on the sources, so it is skipped where they are not present (the
/// bundle's test run on a GPU machine).
/// </summary>
public sealed partial class LayerTests
{
    /// <summary>Folder (under src/FlashMla) → the library namespaces its files may use besides their own.</summary>
    private static readonly (string Folder, string[] Allowed)[] Rules =
    [
        ("Numerics", []),
        ("Cuda", []),
        ("Tensors", ["FlashMla.Numerics", "FlashMla.Cuda"]),
        ("Kernels", ["FlashMla.Numerics", "FlashMla.Tensors", "FlashMla.Cuda"]),
        ("Mla", ["FlashMla.Numerics", "FlashMla.Tensors"]),
        ("Mla/Cpu", ["FlashMla.Numerics", "FlashMla.Tensors", "FlashMla.Mla"]),
        ("Mla/Cuda", ["FlashMla.Numerics", "FlashMla.Tensors", "FlashMla.Cuda", "FlashMla.Kernels", "FlashMla.Mla"]),
    ];

    public static TheoryData<string, string[]> Layers
    {
        get
        {
            var data = new TheoryData<string, string[]>();
            foreach (var (folder, allowed) in Rules)
            {
                data.Add(folder, allowed);
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Layers))]
    public void Layer_UsesOnlyTheLayersBelowIt(string folder, string[] allowed)
    {
        var root = SourceRoot();
        var directory = Path.Combine(root, "src", "FlashMla", folder);
        var own = "FlashMla." + folder.Replace('/', '.');
        var subfolders = Rules.Select(r => r.Folder).Where(f => f.StartsWith(folder + "/", StringComparison.Ordinal)).ToArray();
        var files = Directory.EnumerateFiles(directory, "*.cs", SearchOption.AllDirectories)
            .Where(f => !subfolders.Any(s => Path.GetRelativePath(Path.Combine(root, "src", "FlashMla"), f).Replace('\\', '/').StartsWith(s + "/", StringComparison.Ordinal)))
            .ToArray();
        Assert.NotEmpty(files);
        var violations = new List<string>();
        foreach (var file in files)
        {
            var text = File.ReadAllText(file);
            var declared = NamespacePattern().Match(text);
            Assert.True(declared.Success, $"{file} declares no file-scoped namespace");
            var expected = own + (Path.GetDirectoryName(Path.GetRelativePath(directory, file)) is { Length: > 0 } sub ? "." + sub.Replace(Path.DirectorySeparatorChar, '.') : string.Empty);
            if (declared.Groups[1].Value != expected)
            {
                violations.Add($"{Path.GetRelativePath(root, file)}: namespace {declared.Groups[1].Value}, expected {expected} (namespaces follow folders)");
            }

            foreach (Match m in ReferencePattern().Matches(text))
            {
                var used = m.Groups[1].Value;
                if (used == own || used.StartsWith(own + ".", StringComparison.Ordinal) || allowed.Contains(used) || !IsLayer(used))
                {
                    continue;
                }

                violations.Add($"{Path.GetRelativePath(root, file)}: uses {used}");
            }
        }

        Assert.True(violations.Count == 0, $"{folder} may use only [{string.Join(", ", allowed)}]:{Environment.NewLine}{string.Join(Environment.NewLine, violations.Distinct())}");
    }

    private static bool IsLayer(string ns) =>
        Rules.Any(r => "FlashMla." + r.Folder.Replace('/', '.') == ns);

    private static string SourceRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "FlashMla.slnx")) && Directory.Exists(Path.Combine(dir.FullName, "src", "FlashMla")))
            {
                return dir.FullName;
            }
        }

        Assert.Skip("the sources are not next to the test binaries (a bundle run)");
        return string.Empty;
    }

    [GeneratedRegex(@"^namespace ([\w.]+);", RegexOptions.Multiline)]
    private static partial Regex NamespacePattern();

    // `using FlashMla.X;`, `using FlashMla.X.Y;` and qualified names such as FlashMla.Mla.Cuda.Foo;
    // the longest layer prefix is taken by trying the two-level form first.
    [GeneratedRegex(@"\b(FlashMla\.(?:Mla\.Cpu|Mla\.Cuda|Cuda|Kernels|Mla|Numerics|Tensors))\b")]
    private static partial Regex ReferencePattern();
}
