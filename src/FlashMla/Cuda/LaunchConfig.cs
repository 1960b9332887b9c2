using System.Globalization;

namespace FlashMla.Cuda;

/// <summary>A grid, block or cluster size in up to three dimensions.</summary>
/// <param name="X">The x extent (≥ 1).</param>
/// <param name="Y">The y extent (≥ 1).</param>
/// <param name="Z">The z extent (≥ 1).</param>
public readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    /// <summary>X · Y · Z.</summary>
    public ulong Volume => (ulong)X * Y * Z;

    /// <summary>A one-dimensional size.</summary>
    /// <param name="x">The x extent.</param>
    public static implicit operator Dim3(uint x) => new(x);

    /// <summary>A one-dimensional size.</summary>
    /// <param name="x">The x extent.</param>
    /// <returns>The size.</returns>
    public static Dim3 FromUInt32(uint x) => new(x);

    /// <summary>Formats as "(x, y, z)".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"({X}, {Y}, {Z})");
}

/// <summary>
/// How to launch a kernel with <c>cuLaunchKernelEx</c>: grid and block sizes, dynamic shared
/// memory, the stream, and optional launch attributes.
/// </summary>
/// <param name="Grid">The grid size in blocks.</param>
/// <param name="Block">The block size in threads.</param>
/// <param name="DynamicSharedMemoryBytes">Dynamic shared memory per block, in bytes.</param>
/// <param name="Stream">The stream; null for the legacy default stream.</param>
public readonly record struct LaunchConfig(Dim3 Grid, Dim3 Block, int DynamicSharedMemoryBytes = 0, CudaStream? Stream = null)
{
    /// <summary>
    /// The thread-block cluster size (<c>CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION</c>, sm_90+), or
    /// null for no cluster. Each extent must divide the grid's.
    /// </summary>
    public Dim3? ClusterDim { get; init; }

    /// <summary>
    /// Sets <c>CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION</c> (programmatic dependent
    /// launch, sm_90+): the kernel may start while the previous kernel in the stream finishes and
    /// must wait for it with <c>griddepcontrol.wait</c> before reading its results.
    /// </summary>
    public bool ProgrammaticStreamSerialization { get; init; }

    /// <summary>Formats the configuration for error messages.</summary>
    /// <returns>The text.</returns>
    public override string ToString()
    {
        var text = string.Create(CultureInfo.InvariantCulture, $"grid {Grid} block {Block} dynamic smem {DynamicSharedMemoryBytes} B");
        if (ClusterDim is { } c)
        {
            text += $" cluster {c}";
        }

        if (ProgrammaticStreamSerialization)
        {
            text += " PDL";
        }

        return text;
    }
}
