using System.Text.RegularExpressions;
using FlashMla.Kernels;

namespace FlashMla.Tests;

/// <summary>
/// The library's folders are its layers (docs/architecture.md, "Layers"): each may use only the
/// layers below it. FlashMla.Testing, the one reference, sits beside the library: it may use the
/// backend-neutral layers, no decoder and no binding, and no library layer may use it. Checked on the
/// sources, so it is skipped where they are not present (the bundle's test run on a GPU machine).
/// </summary>
public sealed partial class LayerTests
{
    /// <summary>
    /// Project and folder (under src/&lt;project&gt;; "" for the project's root) → the library
    /// namespaces its files may use besides their own.
    /// </summary>
    private static readonly (string Project, string Folder, string[] Allowed)[] Rules =
    [
        ("FlashMla", "Numerics", []),
        ("FlashMla", "Cuda", []),
        ("FlashMla", "Tensors", ["FlashMla.Numerics", "FlashMla.Cuda"]),
        ("FlashMla", "Kernels", ["FlashMla.Numerics", "FlashMla.Tensors", "FlashMla.Cuda"]),
        ("FlashMla", "Mla", ["FlashMla.Numerics", "FlashMla.Tensors"]),
        ("FlashMla", "Mla/Cpu", ["FlashMla.Numerics", "FlashMla.Tensors", "FlashMla.Mla"]),
        ("FlashMla", "Mla/Cuda", ["FlashMla.Numerics", "FlashMla.Tensors", "FlashMla.Cuda", "FlashMla.Kernels", "FlashMla.Mla"]),
        ("FlashMla.Testing", "", ["FlashMla.Numerics", "FlashMla.Tensors", "FlashMla.Mla"]),
    ];

    public static TheoryData<string, string, string[]> Layers
    {
        get
        {
            var data = new TheoryData<string, string, string[]>();
            foreach (var (project, folder, allowed) in Rules)
            {
                data.Add(project, folder, allowed);
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Layers))]
    public void Layer_UsesOnlyTheLayersBelowIt(string project, string folder, string[] allowed)
    {
        var root = SourceRoot();
        var projectDirectory = Path.Combine(root, "src", project);
        var directory = Path.Combine(projectDirectory, folder);
        var own = Namespace(project, folder);
        var subfolders = Rules
            .Where(r => r.Project == project && r.Folder != folder && (folder.Length == 0 || r.Folder.StartsWith(folder + "/", StringComparison.Ordinal)))
            .Select(r => r.Folder)
            .ToArray();
        var files = Directory.EnumerateFiles(directory, "*.cs", SearchOption.AllDirectories)
            .Where(f => !IsBuildOutput(Path.GetRelativePath(projectDirectory, f)))
            .Where(f => !subfolders.Any(s => Path.GetRelativePath(projectDirectory, f).Replace('\\', '/').StartsWith(s + "/", StringComparison.Ordinal)))
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

        Assert.True(violations.Count == 0, $"{own} may use only [{string.Join(", ", allowed)}]:{Environment.NewLine}{string.Join(Environment.NewLine, violations.Distinct())}");
    }

    [Fact]
    public void OnlyTheToolAndTheTests_ReferenceTheTestingProject()
    {
        var root = SourceRoot();
        string[] referencing =
        [
            .. Directory.EnumerateFiles(Path.Combine(root, "src"), "*.csproj", SearchOption.AllDirectories)
                .Where(f => File.ReadAllText(f).Contains("FlashMla.Testing.csproj", StringComparison.Ordinal))
                .Select(f => Path.GetFileName(f)),
        ];
        Assert.Equal(["FlashMla.Cli.csproj"], referencing);
        Assert.Contains("FlashMla.Testing.csproj", File.ReadAllText(Path.Combine(root, "tests", "FlashMla.Tests", "FlashMla.Tests.csproj")), StringComparison.Ordinal);
    }

    private static string Namespace(string project, string folder) =>
        folder.Length == 0 ? project : project + "." + folder.Replace('/', '.');

    private static bool IsBuildOutput(string relativePath) =>
        relativePath.Replace('\\', '/').Split('/')[0] is "bin" or "obj";

    private static bool IsLayer(string ns) =>
        Rules.Any(r => Namespace(r.Project, r.Folder) == ns);

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
    [GeneratedRegex(@"\b(FlashMla\.(?:Mla\.Cpu|Mla\.Cuda|Cuda|Kernels|Mla|Numerics|Tensors|Testing))\b")]
    private static partial Regex ReferencePattern();
}
