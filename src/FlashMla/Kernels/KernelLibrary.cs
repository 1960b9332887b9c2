using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Text;
using System.Text.RegularExpressions;
using FlashMla.Cuda;
using Microsoft.Extensions.Logging;

namespace FlashMla.Kernels;

/// <summary>
/// The library's PTX kernels for one context: each module is loaded from the embedded resource
/// <c>Kernels/&lt;target&gt;/&lt;name&gt;.ptx</c> on first use, JIT-compiled by the driver (which
/// caches the result on disk) and kept until the context is disposed.
/// </summary>
/// <remarks>
/// <para>
/// The target is <c>sm_90a</c> for a device of compute capability exactly 9.0 (H100, H200) and
/// <c>sm_80</c> for any other device of capability 8.0 or higher; older devices are not supported.
/// Each module is built for the targets its source declares (scripts/build-kernels.sh), so a
/// module may be absent for this context's target: <see cref="TryGetModule"/> says so.
/// </para>
/// <para>
/// Every entry of a module describes itself (<see cref="KernelDescriptor"/>);
/// <see cref="GetEntries"/> returns a module's entries with their descriptors, in source order.
/// Obtain the instance of a context with <see cref="For"/> (or <c>context.Kernels</c>); it is
/// attached to the context and disposed with it.
/// </para>
/// <para>
/// <b>Kernel override.</b> For kernel development, modules can be read from a folder laid out
/// like the resources (<c>&lt;target&gt;/&lt;name&gt;.ptx</c>) instead of the embedded PTX. It takes
/// two environment variables: <see cref="PtxDirectoryEnvironmentVariable"/> names the folder and
/// <see cref="AllowPtxOverrideEnvironmentVariable"/> must be <c>1</c>; the folder alone is ignored.
/// Both outcomes are logged as warnings to the context's logger, and so is every module read
/// from the folder. <see cref="PtxOverrideDirectory"/> says which applies.
/// </para>
/// <para>
/// <b>Logging.</b> Each module load is logged to <see cref="CudaContext.Logger"/> with its source and
/// its JIT time (Information), a failed load as an error.
/// </para>
/// </remarks>
public sealed partial class KernelLibrary : IDisposable
{
    /// <summary>The resource name prefix of the embedded PTX.</summary>
    public const string ResourcePrefix = "Kernels/";

    private readonly Lock _lock = new();
    private readonly Dictionary<string, CudaModule> _modules = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IReadOnlyList<string>> _entryNames = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IReadOnlyList<KernelEntry>> _entries = new(StringComparer.Ordinal);
    private readonly ILogger _logger;
    private bool _disposed;

    internal KernelLibrary(CudaContext context)
    {
        Context = context;
        Target = SelectTarget(context.Device.ComputeCapability);
        _logger = context.Logger;
        PtxOverrideDirectory = ResolvePtxOverride(
            Environment.GetEnvironmentVariable(PtxDirectoryEnvironmentVariable),
            Environment.GetEnvironmentVariable(AllowPtxOverrideEnvironmentVariable),
            _logger);
    }

    /// <summary>The context.</summary>
    public CudaContext Context { get; }

    /// <summary>The kernel library of <paramref name="context"/>, created on first use and disposed with the context.</summary>
    /// <param name="context">The context.</param>
    /// <returns>The library.</returns>
    public static KernelLibrary For(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.GetOrAttach(static c => new KernelLibrary(c));
    }

    /// <summary>The PTX target used: "sm_90a" or "sm_80".</summary>
    public string Target { get; }

    /// <summary>
    /// The folder whose modules replace the embedded PTX, or null (the default) when the embedded
    /// PTX is used: set only when <see cref="PtxDirectoryEnvironmentVariable"/> names a folder and
    /// <see cref="AllowPtxOverrideEnvironmentVariable"/> is <c>1</c> as the library is created.
    /// </summary>
    public string? PtxOverrideDirectory { get; }

    /// <summary>The JIT info logs of the modules loaded so far, by module name.</summary>
    public IReadOnlyDictionary<string, string> JitInfoLogs
    {
        get
        {
            lock (_lock)
            {
                return _modules.ToDictionary(p => p.Key, p => p.Value.JitInfoLog, StringComparer.Ordinal);
            }
        }
    }

    /// <summary>The PTX target for a compute capability.</summary>
    /// <param name="capability">The device's compute capability.</param>
    /// <returns>"sm_90a" for exactly 9.0, "sm_80" for other capabilities ≥ 8.0.</returns>
    /// <exception cref="NotSupportedException">The capability is below 8.0.</exception>
    public static string SelectTarget(CudaComputeCapability capability)
    {
        if (capability.Major == 9 && capability.Minor == 0)
        {
            return "sm_90a";
        }

        if (capability.Major >= 8)
        {
            return "sm_80";
        }

        throw new NotSupportedException(
            $"FlashMLA.NET needs a GPU of compute capability 8.0 or newer (Ampere, Ada, Hopper, …); this device has {capability}. Its kernels use bf16 tensor-core MMA and cp.async, which sm_{capability.Major}{capability.Minor} lacks.");
    }

    /// <summary>The module names embedded for <paramref name="target"/>.</summary>
    /// <param name="target">"sm_90a" or "sm_80".</param>
    /// <returns>The names, sorted.</returns>
    public static IReadOnlyList<string> AvailableModules(string target)
    {
        ArgumentNullException.ThrowIfNull(target);
        var prefix = ResourcePrefix + target + "/";
        return typeof(KernelLibrary).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && n.EndsWith(".ptx", StringComparison.Ordinal))
            .Select(n => n[prefix.Length..^".ptx".Length])
            .Order(StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>The targets <paramref name="module"/> is embedded for.</summary>
    /// <param name="module">The module name.</param>
    /// <returns>The targets, sorted.</returns>
    public static IReadOnlyList<string> TargetsOf(string module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return typeof(KernelLibrary).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal) && n.EndsWith("/" + module + ".ptx", StringComparison.Ordinal))
            .Select(n => n[ResourcePrefix.Length..^(module.Length + ".ptx".Length + 1)])
            .Order(StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>The entry names declared in a module's PTX (<c>.visible .entry</c>), in source order.</summary>
    /// <param name="ptx">The PTX text.</param>
    /// <returns>The names.</returns>
    public static IReadOnlyList<string> EntryNames(string ptx)
    {
        ArgumentNullException.ThrowIfNull(ptx);
        return [.. EntryPattern().Matches(ptx).Select(m => m.Groups[1].Value)];
    }

    /// <summary>
    /// Environment variable naming a folder laid out like the embedded resources
    /// (<c>&lt;target&gt;/&lt;name&gt;.ptx</c>) whose modules are loaded instead of the embedded ones,
    /// for comparing kernel versions with one build. Honoured only together with
    /// <see cref="AllowPtxOverrideEnvironmentVariable"/> = <c>1</c>.
    /// </summary>
    public const string PtxDirectoryEnvironmentVariable = "FLASHMLA_PTX_DIR";

    /// <summary>
    /// Environment variable that must be <c>1</c> for <see cref="PtxDirectoryEnvironmentVariable"/>
    /// to take effect: replacing the shipped GPU code is an explicit opt-in.
    /// </summary>
    public const string AllowPtxOverrideEnvironmentVariable = "FLASHMLA_ALLOW_PTX_OVERRIDE";

    /// <summary>Reads the embedded PTX of a module; null when it is not embedded for <paramref name="target"/>.</summary>
    /// <param name="target">"sm_90a" or "sm_80".</param>
    /// <param name="name">The module name (the .cu file's base name).</param>
    /// <returns>The PTX text, or null.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="target"/> or <paramref name="name"/> is null.</exception>
    public static string? ReadPtx(string target, string name)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(name);
        using var stream = typeof(KernelLibrary).Assembly.GetManifestResourceStream(ResourceName(target, name));
        if (stream is null)
        {
            return null;
        }

        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }

    /// <summary>
    /// The override folder that the values of <see cref="PtxDirectoryEnvironmentVariable"/> and
    /// <see cref="AllowPtxOverrideEnvironmentVariable"/> select, logging a warning when a folder is named
    /// (whether it is used or ignored).
    /// </summary>
    /// <param name="directory">The folder variable's value.</param>
    /// <param name="allow">The opt-in variable's value; only "1" allows the override.</param>
    /// <param name="logger">The logger.</param>
    /// <returns>The folder, or null when the embedded PTX is to be used.</returns>
    internal static string? ResolvePtxOverride(string? directory, string? allow, ILogger logger)
    {
        if (string.IsNullOrWhiteSpace(directory))
        {
            return null;
        }

        if (!string.Equals(allow?.Trim(), "1", StringComparison.Ordinal))
        {
            KernelsLog.PtxOverrideIgnored(logger, PtxDirectoryEnvironmentVariable, directory, AllowPtxOverrideEnvironmentVariable);
            return null;
        }

        var full = Path.GetFullPath(directory.Trim());
        KernelsLog.PtxOverrideActive(logger, full, PtxDirectoryEnvironmentVariable, AllowPtxOverrideEnvironmentVariable);
        return full;
    }

    /// <summary>
    /// The PTX of module <paramref name="name"/> for <paramref name="target"/>: from
    /// <paramref name="overrideDirectory"/> when it holds the module (logged as a warning), otherwise
    /// the embedded resource; null when neither has it.
    /// </summary>
    internal static string? ReadModulePtx(string target, string name, string? overrideDirectory, ILogger logger, out string source)
    {
        if (overrideDirectory is not null)
        {
            var path = Path.Combine(overrideDirectory, target, name + ".ptx");
            if (File.Exists(path))
            {
                KernelsLog.PtxOverrideModule(logger, target, name, path);
                source = path;
                return File.ReadAllText(path, Encoding.UTF8);
            }
        }

        source = "embedded resource " + ResourceName(target, name);
        return ReadPtx(target, name);
    }

    private static string ResourceName(string target, string name) => $"{ResourcePrefix}{target}/{name}.ptx";

    /// <summary>Returns the module <paramref name="name"/>, loading and JIT-compiling it on first use.</summary>
    /// <param name="name">The module name (the .cu file's base name, e.g. "fill").</param>
    /// <returns>The module.</returns>
    /// <exception cref="InvalidOperationException">The module is not built for this context's target.</exception>
    /// <exception cref="CudaException">JIT compilation failed; the message holds the error log.</exception>
    public CudaModule GetModule(string name) =>
        TryGetModule(name, out var module, out var reason) ? module : throw new InvalidOperationException(reason);

    /// <summary>
    /// Returns the module <paramref name="name"/>, loading and JIT-compiling it on first use, or
    /// says why there is none for this context's target.
    /// </summary>
    /// <param name="name">The module name.</param>
    /// <param name="module">The module, when it is built for <see cref="Target"/>.</param>
    /// <param name="reason">Otherwise, why not (the targets it is built for).</param>
    /// <returns>Whether the module is available.</returns>
    /// <exception cref="CudaException">JIT compilation failed; the message holds the error log.</exception>
    public bool TryGetModule(string name, [NotNullWhen(true)] out CudaModule? module, out string reason)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            reason = string.Empty;
            if (_modules.TryGetValue(name, out module))
            {
                return true;
            }

            var ptx = ReadModulePtx(Target, name, PtxOverrideDirectory, _logger, out var source);
            if (ptx is null)
            {
                var targets = TargetsOf(name);
                reason = targets.Count == 0
                    ? $"No PTX resource {ResourcePrefix}{Target}/{name}.ptx is embedded in {typeof(KernelLibrary).Assembly.GetName().Name}: module {name} is not built (embedded for {Target}: [{string.Join(", ", AvailableModules(Target))}]). Run scripts/build-kernels.sh."
                    : $"Module {name} is built for [{string.Join(", ", targets)}], not for {Target}, the target of {Context.Device}.";
                return false;
            }

            var started = Stopwatch.GetTimestamp();
            try
            {
                module = CudaModule.LoadPtx(Context, ptx, $"{Target}/{name}");
            }
            catch (CudaException e) when (LogLoadFailure(name, source, started, e))
            {
                throw; // not reached: the filter logs and declines
            }

            KernelsLog.ModuleLoaded(_logger, Target, name, source, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            _modules.Add(name, module);
            _entryNames.Add(name, EntryNames(ptx));
            return true;
        }
    }

    /// <summary>
    /// The entries of module <paramref name="name"/> in source order, each with the descriptor
    /// read from the loaded module (loading it on first use).
    /// </summary>
    /// <param name="name">The module name.</param>
    /// <returns>The entries.</returns>
    /// <exception cref="InvalidOperationException">The module is not built for this target, or an entry has no descriptor.</exception>
    public IReadOnlyList<KernelEntry> GetEntries(string name)
    {
        var module = GetModule(name);
        lock (_lock)
        {
            if (_entries.TryGetValue(name, out var cached))
            {
                return cached;
            }
        }

        IReadOnlyList<string> names;
        lock (_lock)
        {
            names = _entryNames[name];
        }

        var entries = new List<KernelEntry>();
        foreach (var entry in names)
        {
            var bytes = module.TryReadGlobal(KernelDescriptor.GlobalPrefix + entry) ?? throw new InvalidOperationException(
                $"Kernel {entry} of module {name} ({Target}) has no descriptor {KernelDescriptor.GlobalPrefix}{entry}; declare it with FMLA_KERNEL (kernels/include/kernel_desc.cuh).");
            entries.Add(new KernelEntry(module.GetKernel(entry), KernelDescriptor.Parse(bytes, name, entry, Target)));
        }

        lock (_lock)
        {
            if (!_entries.TryGetValue(name, out var existing))
            {
                existing = entries;
                _entries.Add(name, existing);
            }

            return existing;
        }
    }

    /// <summary>Entry <paramref name="entry"/> of module <paramref name="name"/> with its descriptor.</summary>
    /// <param name="name">The module name.</param>
    /// <param name="entry">The entry name.</param>
    /// <returns>The entry.</returns>
    /// <exception cref="InvalidOperationException">No such module for this target, or no such entry.</exception>
    public KernelEntry GetEntry(string name, string entry) =>
        GetEntries(name).FirstOrDefault(e => e.Descriptor.Entry == entry)
        ?? throw new InvalidOperationException($"Module {name} ({Target}) has no entry {entry}.");

    /// <summary>Returns kernel <paramref name="kernelName"/> of module <paramref name="moduleName"/>.</summary>
    /// <param name="moduleName">The module name.</param>
    /// <param name="kernelName">The kernel's entry name.</param>
    /// <returns>The kernel.</returns>
    public CudaKernel GetKernel(string moduleName, string kernelName) => GetModule(moduleName).GetKernel(kernelName);

    /// <summary>Unloads every module. Idempotent.</summary>
    public void Dispose()
    {
        List<CudaModule> modules;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            modules = [.. _modules.Values];
            _modules.Clear();
            _entryNames.Clear();
            _entries.Clear();
        }

        foreach (var module in modules)
        {
            module.Dispose();
        }
    }

    private bool LogLoadFailure(string name, string source, long started, CudaException e)
    {
        KernelsLog.ModuleLoadFailed(_logger, Target, name, source, Stopwatch.GetElapsedTime(started).TotalMilliseconds, e.Message);
        return false;
    }

    [GeneratedRegex(@"^\.visible \.entry (\w+)\(", RegexOptions.Multiline)]
    private static partial Regex EntryPattern();
}

/// <summary><c>context.Kernels</c>: the context's <see cref="KernelLibrary"/>.</summary>
public static class KernelLibraryContextExtensions
{
    extension(CudaContext context)
    {
        /// <summary>The PTX modules of this library for the context (<see cref="KernelLibrary.For"/>).</summary>
        public KernelLibrary Kernels => KernelLibrary.For(context);
    }
}
