using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;

namespace FlashMla.Tests;

/// <summary>How much of the GPU suite runs, from the environment variable <c>FLASHMLA_GPU_TESTS</c>.</summary>
public enum GpuTestMode
{
    /// <summary>Unset or "full": everything, including the large decode cases.</summary>
    Full,

    /// <summary>"quick": a small subset (a slice of the pairwise grid, no large cases), e.g. for compute-sanitizer.</summary>
    Quick,

    /// <summary>"off", "0" or "none": every GPU test is skipped.</summary>
    Off,
}

/// <summary>
/// The GPU tests' collection: one <see cref="GpuFixture"/> (one context) for the whole run, and no
/// parallelism, since tests capture graphs and use the legacy stream.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GpuCollection : ICollectionFixture<GpuFixture>
{
    /// <summary>The collection name.</summary>
    public const string Name = "Gpu";
}

/// <summary>
/// Lazily loads the CUDA driver and retains device 0's primary context once per test run. Tests
/// call <see cref="RequireContext"/> first: where there is no driver or no device it reports the
/// test as skipped with the exact reason (the load trace or the <c>cuInit</c> error).
/// </summary>
public sealed class GpuFixture : IDisposable
{
    /// <summary>The environment variable selecting <see cref="GpuTestMode"/>.</summary>
    public const string ModeVariable = "FLASHMLA_GPU_TESTS";

    /// <summary>The opt-in shared memory per block of sm_86 and sm_89 (RTX 30/40, A10, L4, L40S): 99 KB.</summary>
    public const int Sm86SharedMemoryLimit = 101_376;

    private readonly Lazy<(CudaContext? Context, string Reason)> _context = new(Open);
    private readonly Lock _lock = new();
    private CudaStream? _stream;
    private CudaMlaDecoder? _decoder;
    private CudaMlaDecoder? _mmaSyncDecoder;
    private CudaMlaDecoder? _wgmmaFirstDecoder;
    private CudaMlaDecoder? _compactDecoder;
    private string? _decoderSkipReason;

    /// <summary>The mode from <c>FLASHMLA_GPU_TESTS</c>.</summary>
    public static GpuTestMode Mode { get; } = ParseMode(Environment.GetEnvironmentVariable(ModeVariable));

    /// <summary>Whether only the quick subset runs.</summary>
    public static bool Quick => Mode == GpuTestMode.Quick;

    /// <summary>Returns the context, or skips the calling test with the reason the GPU is unusable.</summary>
    /// <returns>The context of device 0.</returns>
    public CudaContext RequireContext()
    {
        if (Mode == GpuTestMode.Off)
        {
            SkipReasons.Skip($"GPU tests disabled by {ModeVariable}", $"GPU tests disabled by {ModeVariable}={Environment.GetEnvironmentVariable(ModeVariable)}.");
        }

        var (context, reason) = _context.Value;
        if (context is null)
        {
            SkipReasons.SkipNoCudaDevice(reason);
        }

        return context;
    }

    /// <summary>A stream of the shared context, created once (skips like <see cref="RequireContext"/>).</summary>
    /// <returns>The stream.</returns>
    public CudaStream RequireStream()
    {
        var context = RequireContext();
        lock (_lock)
        {
            return _stream ??= CudaStream.Create(context);
        }
    }

    /// <summary>Skips the calling test unless the device has at least the given compute capability.</summary>
    /// <param name="major">The major version.</param>
    /// <param name="minor">The minor version.</param>
    /// <param name="what">What needs it, for the skip reason.</param>
    public void RequireComputeCapability(int major, int minor, string what)
    {
        var device = RequireContext().Device;
        var cc = device.ComputeCapability;
        if (cc < new CudaComputeCapability(major, minor))
        {
            Assert.Skip($"{what} needs compute capability {major}.{minor}; {device} has {cc}.");
        }
    }

    /// <summary>
    /// The shared decoder. Skips the calling test when the device is unusable, or when the decode
    /// kernels' PTX is not embedded yet (the reason names the missing modules); JIT failures fail.
    /// </summary>
    /// <returns>The decoder.</returns>
    public CudaMlaDecoder RequireDecoder()
    {
        var context = RequireContext();
        lock (_lock)
        {
            if (_decoder is null && _decoderSkipReason is null)
            {
                string target;
                try
                {
                    target = KernelLibrary.SelectTarget(context.Device.ComputeCapability);
                }
                catch (NotSupportedException ex)
                {
                    _decoderSkipReason = ex.Message;
                    target = string.Empty;
                }

                if (_decoderSkipReason is null)
                {
                    var available = KernelLibrary.AvailableModules(target);
                    string[] needed = ["decode_schedule", "decode_splitkv", "decode_combine", "fill"];
                    var missing = needed.Where(m => !available.Contains(m)).ToArray();
                    if (missing.Length > 0)
                    {
                        _decoderSkipReason = $"decode kernels not built yet: PTX for [{string.Join(", ", missing)}] is not embedded for {target} (embedded: [{string.Join(", ", available)}]); run scripts/build-kernels.sh.";
                    }
                    else
                    {
                        try
                        {
                            _decoder = new CudaMlaDecoder(context);
                        }
                        catch (NotSupportedException ex)
                        {
                            _decoderSkipReason = $"the CUDA decoder does not support {context.Device}: {ex.Message}";
                        }
                    }
                }
            }

            if (_decoder is null)
            {
                Assert.Skip(_decoderSkipReason ?? "decoder unavailable");
            }

            return _decoder;
        }
    }

    /// <summary>
    /// A decoder that asks only the portable mma.sync path (created once), so that its kernels are
    /// tested on devices where a more specialised path would take their calls. Skips like
    /// <see cref="RequireDecoder"/>.
    /// </summary>
    /// <returns>The decoder.</returns>
    public CudaMlaDecoder RequireMmaSyncDecoder()
    {
        var shared = RequireDecoder();
        lock (_lock)
        {
            return _mmaSyncDecoder ??= new CudaMlaDecoder(shared.Context, [MmaSyncPath.Registration.Name]);
        }
    }

    /// <summary>
    /// A decoder pinned to the wgmma path first and mma.sync second (created once): wgmma takes every
    /// call it can compute, however small, and mma.sync the rest (page sizes that are not multiples
    /// of 64). On devices without the wgmma path it is the mma.sync path alone. Skips like
    /// <see cref="RequireDecoder"/>.
    /// </summary>
    /// <returns>The decoder.</returns>
    public CudaMlaDecoder RequireWgmmaFirstDecoder()
    {
        var shared = RequireDecoder();
        lock (_lock)
        {
            return _wgmmaFirstDecoder ??= new CudaMlaDecoder(shared.Context, [WgmmaPath.Registration.Name, MmaSyncPath.Registration.Name]);
        }
    }

    /// <summary>
    /// A decoder that picks its kernels as if the device allowed only <see cref="Sm86SharedMemoryLimit"/>
    /// bytes of shared memory per block, as sm_86 and sm_89 do (created once): every call runs on the
    /// compact mma.sync path there. Skips like <see cref="RequireDecoder"/>.
    /// </summary>
    /// <returns>The decoder.</returns>
    public CudaMlaDecoder RequireCompactDecoder()
    {
        var shared = RequireDecoder();
        lock (_lock)
        {
            return _compactDecoder ??= new CudaMlaDecoder(shared.Context, Sm86SharedMemoryLimit);
        }
    }

    /// <summary>Releases the decoders, the stream and the context.</summary>
    public void Dispose()
    {
        _decoder?.Dispose();
        _mmaSyncDecoder?.Dispose();
        _wgmmaFirstDecoder?.Dispose();
        _compactDecoder?.Dispose();
        _stream?.Dispose();
        if (_context.IsValueCreated)
        {
            _context.Value.Context?.Dispose();
        }
    }

    internal static GpuTestMode ParseMode(string? value) => value?.Trim().ToUpperInvariant() switch
    {
        null or "" or "FULL" or "1" => GpuTestMode.Full,
        "QUICK" => GpuTestMode.Quick,
        "OFF" or "0" or "NONE" => GpuTestMode.Off,
        _ => GpuTestMode.Full,
    };

    private static (CudaContext? Context, string Reason) Open()
    {
        if (!CudaDriver.TryLoad(out var driver, out var reason))
        {
            return (null, $"no usable CUDA driver: {reason}");
        }

        try
        {
            var count = driver.DeviceCount;
            if (count == 0)
            {
                return (null, $"the CUDA driver ({driver.LibraryName}, CUDA {driver.VersionString}) reports no device.");
            }

            return (new CudaContext(driver.GetDevice(0)), string.Empty);
        }
        catch (CudaException ex)
        {
            return (null, $"CUDA device 0 is unusable: {ex.Message}");
        }
    }
}
