using System.Reflection;
using System.Text;

using FlashMla.Cuda;

namespace FlashMla.Kernels;

/// <summary>
/// The library's PTX kernels for one context: each module is loaded from the embedded resource
/// <c>Kernels/&lt;target&gt;/&lt;name&gt;.ptx</c> on first use, JIT-compiled by the driver (which
/// caches the result on disk) and kept until the context is disposed.
/// </summary>
/// <remarks>
/// The target is <c>sm_90a</c> for a device of compute capability exactly 9.0 (H100, H200) and
/// <c>sm_80</c> for any other device of capability 8.0 or higher; older devices are not supported.
/// Obtain the instance of a context with <see cref="For"/> (or <c>context.Kernels</c>); it is
/// attached to the context and disposed with it.
/// </remarks>
public sealed class KernelLibrary : IDisposable
{
    /// <summary>The resource name prefix of the embedded PTX.</summary>
    public const string ResourcePrefix = "Kernels/";

    private readonly Lock _lock = new();
    private readonly Dictionary<string, CudaModule> _modules = new(StringComparer.Ordinal);
    private bool _disposed;

    internal KernelLibrary(CudaContext context)
    {
        Context = context;
        Target = SelectTarget(context.Device.ComputeCapability);
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

    /// <summary>
    /// Environment variable naming a folder laid out like the embedded resources
    /// (<c>&lt;target&gt;/&lt;name&gt;.ptx</c>); a module found there is loaded instead of the embedded one.
    /// For kernel development: it lets one build compare kernel versions without a rebuild.
    /// </summary>
    public const string PtxDirectoryEnvironmentVariable = "FLASHMLA_PTX_DIR";

    /// <summary>
    /// Reads the PTX of a module: from <see cref="PtxDirectoryEnvironmentVariable"/>'s folder when it holds the
    /// module, otherwise the embedded resource; null when neither has it.
    /// </summary>
    /// <param name="target">"sm_90a" or "sm_80".</param>
    /// <param name="name">The module name (the .cu file's base name).</param>
    /// <returns>The PTX text, or null.</returns>
    public static string? ReadPtx(string target, string name)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(name);
        var overrideDirectory = Environment.GetEnvironmentVariable(PtxDirectoryEnvironmentVariable);
        if (!string.IsNullOrEmpty(overrideDirectory))
        {
            var path = Path.Combine(overrideDirectory, target, name + ".ptx");
            if (File.Exists(path))
            {
                return File.ReadAllText(path, Encoding.UTF8);
            }
        }

        using var stream = typeof(KernelLibrary).Assembly.GetManifestResourceStream($"{ResourcePrefix}{target}/{name}.ptx");
        if (stream is null)
        {
            return null;
        }

        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }

    /// <summary>Returns the module <paramref name="name"/>, loading and JIT-compiling it on first use.</summary>
    /// <param name="name">The module name (the .cu file's base name, e.g. "fill").</param>
    /// <returns>The module.</returns>
    /// <exception cref="InvalidOperationException">No such PTX resource is embedded.</exception>
    /// <exception cref="CudaException">JIT compilation failed; the message holds the error log.</exception>
    public CudaModule GetModule(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_modules.TryGetValue(name, out var module))
            {
                return module;
            }

            var ptx = ReadPtx(Target, name) ?? throw new InvalidOperationException(
                $"No PTX resource {ResourcePrefix}{Target}/{name}.ptx is embedded in {typeof(KernelLibrary).Assembly.GetName().Name}; embedded for {Target}: [{string.Join(", ", AvailableModules(Target))}]. Run scripts/build-kernels.sh.");
            module = CudaModule.LoadPtx(Context, ptx, $"{Target}/{name}");
            _modules.Add(name, module);
            return module;
        }
    }

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
        }

        foreach (var module in modules)
        {
            module.Dispose();
        }
    }
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
