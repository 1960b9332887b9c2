using FlashMla.Kernels;
using Microsoft.Extensions.Logging;

namespace FlashMla.Tests.Kernels;

/// <summary>
/// The kernel override (<c>FLASHMLA_PTX_DIR</c>) is an explicit opt-in (<c>FLASHMLA_ALLOW_PTX_OVERRIDE=1</c>)
/// and is logged whenever a folder is named. Tested on the resolution and read functions that the
/// kernel library calls with the environment's values, so no test changes the process environment.
/// </summary>
public sealed class PtxOverrideTests
{
    [Fact]
    public void Variables_HaveTheDocumentedNames()
    {
        Assert.Equal("FLASHMLA_PTX_DIR", KernelLibrary.PtxDirectoryEnvironmentVariable);
        Assert.Equal("FLASHMLA_ALLOW_PTX_OVERRIDE", KernelLibrary.AllowPtxOverrideEnvironmentVariable);
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("", "1")]
    [InlineData("  ", "1")]
    public void NoFolder_UsesTheEmbeddedPtx_Silently(string? directory, string? allow)
    {
        var logger = new CollectingLogger();
        Assert.Null(KernelLibrary.ResolvePtxOverride(directory, allow, logger));
        Assert.Empty(logger.Entries);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("0")]
    [InlineData("true")]
    [InlineData("yes")]
    public void FolderWithoutOptIn_IsIgnored_WithAWarning(string? allow)
    {
        var logger = new CollectingLogger();
        var directory = Path.Combine(Path.GetTempPath(), $"flashmla-ptx-{Guid.NewGuid():N}");

        Assert.Null(KernelLibrary.ResolvePtxOverride(directory, allow, logger));

        var entry = Assert.Single(logger.Entries);
        Assert.Equal(LogLevel.Warning, entry.Level);
        Assert.Equal(203, entry.EventId.Id);
        Assert.Contains(directory, entry.Message, StringComparison.Ordinal);
        Assert.Contains(KernelLibrary.AllowPtxOverrideEnvironmentVariable + "=1", entry.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("1")]
    [InlineData(" 1 ")]
    public void FolderWithOptIn_IsUsed_WithAWarning(string allow)
    {
        var logger = new CollectingLogger();
        var directory = Path.Combine(Path.GetTempPath(), $"flashmla-ptx-{Guid.NewGuid():N}");

        Assert.Equal(Path.GetFullPath(directory), KernelLibrary.ResolvePtxOverride(directory, allow, logger));

        var entry = Assert.Single(logger.Entries);
        Assert.Equal(LogLevel.Warning, entry.Level);
        Assert.Equal(202, entry.EventId.Id);
        Assert.Contains(Path.GetFullPath(directory), entry.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ModuleInTheOverrideFolder_ReplacesTheEmbeddedOne_AndIsLogged()
    {
        var logger = new CollectingLogger();
        var folder = Directory.CreateTempSubdirectory("flashmla-ptx-");
        try
        {
            const string Target = "sm_80";
            Directory.CreateDirectory(Path.Combine(folder.FullName, Target));
            var text = $"// override {Guid.NewGuid():N}\n";
            var path = Path.Combine(folder.FullName, Target, DeviceFill.ModuleName + ".ptx");
            File.WriteAllText(path, text);

            var ptx = KernelLibrary.ReadModulePtx(Target, DeviceFill.ModuleName, folder.FullName, logger, out var source);

            Assert.Equal(text, ptx);
            Assert.Equal(path, source);
            var entry = Assert.Single(logger.WithEvent(204));
            Assert.Equal(LogLevel.Warning, entry.Level);
            Assert.Contains(path, entry.Message, StringComparison.Ordinal);

            // Nothing else reads the folder: the public reader returns the shipped PTX.
            Assert.Equal(KernelLibrary.ReadPtx(Target, DeviceFill.ModuleName), EmbeddedFill(Target));
            Assert.NotEqual(text, KernelLibrary.ReadPtx(Target, DeviceFill.ModuleName));
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    [Fact]
    public void ModuleMissingFromTheOverrideFolder_ComesFromTheEmbeddedPtx_Silently()
    {
        var logger = new CollectingLogger();
        var folder = Directory.CreateTempSubdirectory("flashmla-ptx-");
        try
        {
            var ptx = KernelLibrary.ReadModulePtx("sm_80", DeviceFill.ModuleName, folder.FullName, logger, out var source);

            Assert.Equal(EmbeddedFill("sm_80"), ptx);
            Assert.Equal($"embedded resource {KernelLibrary.ResourcePrefix}sm_80/{DeviceFill.ModuleName}.ptx", source);
            Assert.Empty(logger.Entries);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    private static string EmbeddedFill(string target)
    {
        using var stream = typeof(KernelLibrary).Assembly.GetManifestResourceStream($"{KernelLibrary.ResourcePrefix}{target}/{DeviceFill.ModuleName}.ptx")!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
