using System.Text.RegularExpressions;

namespace FlashMla.Tests.Samples;

/// <summary>
/// The C# in the documentation is taken from the samples, which the build compiles and the tests
/// run: each <c>```csharp</c> block of a checked Markdown file follows a line
/// <c>&lt;!-- snippet: samples/X/File.cs#region --&gt;</c> and equals, line for line, that file's
/// region between <c>// &lt;region&gt;</c> and <c>// &lt;/region&gt;</c> (less its common indentation).
/// </summary>
public sealed partial class ReadmeSnippetTests
{
    /// <summary>The Markdown files whose C# blocks must come from the samples.</summary>
    public static TheoryData<string> Documents => new(["README.md", "samples/README.md"]);

    [Theory]
    [MemberData(nameof(Documents))]
    public void EveryCSharpBlock_IsASampleRegion(string document)
    {
        var root = SampleSources.RequireRoot();
        var lines = ReadLines(Path.Combine(root, document));
        var problems = new List<string>();
        var blocks = 0;
        for (var i = 0; i < lines.Length; i++)
        {
            if (!CSharpFencePattern().IsMatch(lines[i]))
            {
                continue;
            }

            blocks++;
            var end = Array.FindIndex(lines, i + 1, l => l.TrimEnd() == "```");
            Assert.True(end > i, $"{document}:{i + 1}: the C# block is not closed");
            var block = lines[(i + 1)..end];
            var marker = i > 0 ? SnippetMarkerPattern().Match(lines[i - 1]) : Match.Empty;
            if (!marker.Success)
            {
                problems.Add($"{document}:{i + 1}: a C# block without a '<!-- snippet: samples/…#region -->' line before it");
            }
            else
            {
                var file = marker.Groups["file"].Value;
                var region = marker.Groups["region"].Value;
                var path = Path.Combine(root, file.Replace('/', Path.DirectorySeparatorChar));
                if (!File.Exists(path))
                {
                    problems.Add($"{document}:{i}: {file} does not exist");
                }
                else if (Region(ReadLines(path), region) is not { } expected)
                {
                    problems.Add($"{document}:{i}: {file} has no region '{region}' (// <{region}> … // </{region}>)");
                }
                else if (!expected.SequenceEqual(block))
                {
                    problems.Add($"{document}:{i + 1}: the block differs from {file}#{region}; the region is:{Environment.NewLine}{string.Join(Environment.NewLine, expected)}");
                }
            }

            i = end;
        }

        Assert.True(problems.Count == 0, string.Join(Environment.NewLine + Environment.NewLine, problems));
        Assert.True(blocks > 0, $"{document} has no C# block, so nothing was checked");
    }

    [Fact]
    public void SampleRegions_AreClosedAndUnique()
    {
        var root = SampleSources.RequireRoot();
        var problems = new List<string>();
        foreach (var file in Directory.EnumerateFiles(Path.Combine(root, "samples"), "*.cs", SearchOption.AllDirectories)
                     .Where(f => !Path.GetRelativePath(root, f).Split(Path.DirectorySeparatorChar).Any(p => p is "bin" or "obj")))
        {
            var open = new Dictionary<string, int>();
            var seen = new HashSet<string>();
            var lines = ReadLines(file);
            for (var i = 0; i < lines.Length; i++)
            {
                var m = RegionMarkerPattern().Match(lines[i]);
                if (!m.Success)
                {
                    continue;
                }

                var name = m.Groups["name"].Value;
                var where = $"{Path.GetRelativePath(root, file)}:{i + 1}";
                if (m.Groups["close"].Success)
                {
                    if (!open.Remove(name))
                    {
                        problems.Add($"{where}: // </{name}> closes no open region");
                    }
                }
                else if (!seen.Add(name))
                {
                    problems.Add($"{where}: region '{name}' opened twice");
                }
                else
                {
                    open[name] = i + 1;
                }
            }

            problems.AddRange(open.Select(r => $"{Path.GetRelativePath(root, file)}:{r.Value}: region '{r.Key}' is never closed"));
        }

        Assert.True(problems.Count == 0, string.Join(Environment.NewLine, problems));
    }

    [Fact]
    public void Region_DropsNestedMarkers_AndTheCommonIndentation()
    {
        string[] source =
        [
            "x();",
            "    // <outer>",
            "    if (a)",
            "    {",
            "        // <inner>",
            "        b();",
            "        // </inner>",
            "    }",
            "    // </outer>",
        ];

        Assert.Equal(["if (a)", "{", "    b();", "}"], Region(source, "outer") ?? []);
        Assert.Equal(["b();"], Region(source, "inner") ?? []);
        Assert.Null(Region(source, "missing"));
    }

    /// <summary>The lines of a region, without the marker lines of regions inside it and without their common indentation; null when the region does not exist.</summary>
    internal static string[]? Region(string[] lines, string name)
    {
        var start = Array.FindIndex(lines, l => IsMarker(l, name, close: false));
        if (start < 0)
        {
            return null;
        }

        var end = Array.FindIndex(lines, start + 1, l => IsMarker(l, name, close: true));
        if (end < 0)
        {
            return null;
        }

        var body = lines[(start + 1)..end].Where(l => !RegionMarkerPattern().IsMatch(l)).ToArray();
        var indent = body.Where(l => l.Trim().Length > 0).Select(l => l.Length - l.TrimStart().Length).DefaultIfEmpty(0).Min();
        return [.. body.Select(l => l.Trim().Length == 0 ? string.Empty : l[indent..])];
    }

    private static bool IsMarker(string line, string name, bool close)
    {
        var m = RegionMarkerPattern().Match(line);
        return m.Success && m.Groups["name"].Value == name && m.Groups["close"].Success == close;
    }

    private static string[] ReadLines(string path) => File.ReadAllText(path).ReplaceLineEndings("\n").TrimEnd('\n').Split('\n');

    [GeneratedRegex(@"^```(csharp|cs|c#)\s*$")]
    private static partial Regex CSharpFencePattern();

    [GeneratedRegex(@"^<!-- snippet: (?<file>samples/[\w./-]+\.cs)#(?<region>[a-z0-9-]+) -->$")]
    private static partial Regex SnippetMarkerPattern();

    [GeneratedRegex(@"^\s*// <(?<close>/)?(?<name>[a-z0-9-]+)>\s*$")]
    private static partial Regex RegionMarkerPattern();
}
