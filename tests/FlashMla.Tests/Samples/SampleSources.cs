namespace FlashMla.Tests.Samples;

/// <summary>Finds the repository's files from the test binaries (absent in a bundle run).</summary>
internal static class SampleSources
{
    /// <summary>The first existing file at <paramref name="relativePath"/> under the test binaries' folder or one of its parents.</summary>
    /// <param name="relativePath">A path relative to the repository root, with '/' separators.</param>
    /// <returns>Its full path, or null when no parent holds it.</returns>
    public static string? FindUp(string relativePath)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, relativePath.Replace('/', Path.DirectorySeparatorChar));
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>The repository root, or skips the calling test where the sources are not present.</summary>
    /// <returns>The root folder.</returns>
    public static string RequireRoot()
    {
        var solution = FindUp("FlashMla.slnx");
        if (solution is null || !Directory.Exists(Path.Combine(Path.GetDirectoryName(solution)!, "samples")))
        {
            Assert.Skip("the sources are not next to the test binaries (a bundle run)");
        }

        return Path.GetDirectoryName(solution)!;
    }
}
