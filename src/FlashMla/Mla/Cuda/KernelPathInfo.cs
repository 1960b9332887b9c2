using System.Globalization;
using FlashMla.Cuda;
using FlashMla.Kernels;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// Which kernel a CUDA decode call runs: the kernel path (the family of kernels, e.g. "mma.sync")
/// and the variant it picks, with its launch facts from the kernel's own descriptor. Returned by
/// <see cref="CudaMlaDecoder.DescribeKernel"/>; the shared schedule and combine kernels are not
/// part of it.
/// </summary>
/// <param name="Path">The kernel path's name.</param>
/// <param name="Kernel">The split-KV kernel's descriptor (entry, module, target, threads, rows per CTA, stages, shared memory).</param>
/// <param name="Grid">The split-KV kernel's grid for the plan's number of parts.</param>
public sealed record KernelPathInfo(string Path, KernelDescriptor Kernel, Dim3 Grid)
{
    /// <summary>The kernel's entry name.</summary>
    public string Entry => Kernel.Entry;

    /// <summary>The PTX target it was loaded for.</summary>
    public string Target => Kernel.Target;

    /// <summary>Query rows per CTA.</summary>
    public int RowsPerCta => Kernel.RowsPerCta;

    /// <summary>Threads per CTA.</summary>
    public int Threads => Kernel.Threads;

    /// <summary>Dynamic shared memory per CTA, in bytes.</summary>
    public int SharedMemoryBytes => Kernel.SharedMemoryBytes;

    /// <summary>K-tile pipeline stages.</summary>
    public int Stages => Kernel.Stages;

    /// <summary>
    /// Whether the split-KV kernel merges the call's split requests itself (one launch,
    /// <see cref="CudaMlaDecoder.MergeInKernel"/>); otherwise the combine kernel runs after it.
    /// </summary>
    public bool MergesInKernel { get; init; }

    /// <summary>Formats as "mma.sync sm_90a mla_decode_splitkv_bf16_m64 (64 rows/CTA, 256 threads, 2 stages, 230912 B shared memory, grid (2, 1, 66), merge: combine kernel)".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"{Path} {Target} {Entry} ({RowsPerCta} rows/CTA, {Threads} threads, {Stages} stage{(Stages == 1 ? string.Empty : "s")}, {SharedMemoryBytes} B shared memory, grid {Grid}, merge: {(MergesInKernel ? "in kernel" : "combine kernel")})");
}

/// <summary>Whether a kernel path can run on a device, and why not.</summary>
/// <param name="Path">The kernel path's name.</param>
/// <param name="Module">The module that holds its split-KV kernels.</param>
/// <param name="Target">The PTX target of the device.</param>
/// <param name="Reason">Null when the path is available; otherwise why not.</param>
public sealed record KernelPathStatus(string Path, string Module, string Target, string? Reason)
{
    /// <summary>Whether the path can run on the device.</summary>
    public bool IsAvailable => Reason is null;

    /// <summary>Formats as "mma.sync (decode_splitkv, sm_90a): available" or with the reason.</summary>
    /// <returns>The text.</returns>
    public override string ToString() => $"{Path} ({Module}, {Target}): {Reason ?? "available"}";
}
