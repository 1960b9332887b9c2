namespace FlashMla.Mla.Cuda;

/// <summary>
/// The kernel paths of <see cref="CudaMlaDecoder"/>, most specialised first: a call runs on the
/// first path that is available on the device and supports it. A new path is one class that
/// implements <see cref="IDecodeKernelPath"/> (with a static <see cref="DecodePathRegistration"/>)
/// and one line here (docs/architecture.md, "Adding a kernel path").
/// </summary>
internal static class DecodeKernelPaths
{
    /// <summary>Every registered path, in the order the decoder asks them.</summary>
    public static IReadOnlyList<DecodePathRegistration> All { get; } =
    [
        WgmmaPath.Registration,
        MmaSyncPath.Registration,
        MmaSyncPath.CompactRegistration,
    ];
}
