using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;

namespace FlashMla.Cli.Backends;

/// <summary>A context on device 0, the CUDA decoder and a non-blocking stream; the CLI's handle on the GPU.</summary>
internal sealed class CudaSession : IDisposable
{
    private CudaSession(CudaContext context, CudaMlaDecoder decoder, CudaStream stream)
    {
        Context = context;
        Decoder = decoder;
        Stream = stream;
    }

    public CudaContext Context { get; }

    public CudaMlaDecoder Decoder { get; }

    public CudaStream Stream { get; }

    public string GpuName => Context.Device.Name;

    public string DeviceDescription => $"{Context.Device.Name}, compute capability {Context.Device.ComputeCapability}";

    /// <summary>
    /// The decoder's code path: its <c>KernelPath</c> property when the library has one, else
    /// "mma.sync" with the PTX target loaded for this device (the v1 kernel is mma.sync on both targets).
    /// </summary>
    public string KernelPath
    {
        get
        {
            var property = typeof(CudaMlaDecoder).GetProperty("KernelPath", BindingFlags.Public | BindingFlags.Instance);
            if (property?.GetValue(Decoder) is string { Length: > 0 } path)
            {
                return path;
            }
            return $"mma.sync {Context.Kernels.Target}";
        }
    }

    /// <summary>
    /// The code path for one case: <see cref="KernelPath"/> plus the rows per CTA of the split-KV
    /// variant (16, 32 or 64: the smallest that holds s_q·h_q/h_kv, the library's rule).
    /// </summary>
    public string KernelPathFor(Inputs.DecodeCaseSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var rows = spec.SeqQ * (spec.HeadsQ / spec.HeadsKv);
        var rowsPerCta = rows <= 16 ? 16 : rows <= 32 ? 32 : 64;
        return $"{KernelPath} m{rowsPerCta}";
    }

    public static bool TryOpen([NotNullWhen(true)] out CudaSession? session, out string reason)
    {
        session = null;
        if (!CudaDriver.TryLoad(out var driver, out reason))
        {
            reason = "no CUDA device: " + CudaProbe.FirstLine(reason);
            return false;
        }

        CudaContext? context = null;
        CudaMlaDecoder? decoder = null;
        try
        {
            if (driver.DeviceCount == 0)
            {
                reason = "no CUDA device: the driver reports none";
                return false;
            }
            context = new CudaContext(driver.GetDevice(0));
            decoder = new CudaMlaDecoder(context);
            var stream = CudaStream.Create(context, nonBlocking: true);
            session = new CudaSession(context, decoder, stream);
            reason = string.Empty;
            return true;
        }
        catch (Exception e) when (e is CudaException or NotSupportedException or InvalidOperationException)
        {
            decoder?.Dispose();
            context?.Dispose();
            reason = $"{e.GetType().Name}: {e.Message}";
            return false;
        }
    }

    public void Dispose()
    {
        Stream.Dispose();
        Decoder.Dispose();
        Context.Dispose();
    }
}
