using FlashMla.Cuda;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// Launch geometry of the decode kernels, in one place so that it follows the kernels' headers
/// (kernels/decode_schedule.cu, decode_splitkv.cu, decode_combine.cu).
/// </summary>
internal static class DecodeKernelGeometry
{
    /// <summary>Threads per split-KV CTA (8 warps).</summary>
    public const int Threads = 256;

    /// <summary>Warps per split-KV CTA.</summary>
    public const int Warps = Threads / 32;

    /// <summary>Keys per K tile (and tokens per schedule block).</summary>
    public const int BlockN = 64;

    /// <summary>The largest QK head dimension; shared-memory tiles are sized for it.</summary>
    public const int MaxHeadDim = 576;

    /// <summary>The most query rows per split-KV CTA.</summary>
    public const int BlockM = 64;

    /// <summary>Threads of the schedule kernel (one warp; grid 1).</summary>
    public const int ScheduleThreads = 32;

    /// <summary>Warps per combine CTA: one query row each.</summary>
    public const int CombineWarps = 8;

    /// <summary>Threads per combine CTA.</summary>
    public const int CombineThreads = CombineWarps * 32;

    /// <summary>Dynamic shared memory a kernel may use without opting in.</summary>
    public const int DefaultDynamicSharedMemoryLimit = 48 * 1024;

    /// <summary>The schedule module.</summary>
    public const string ScheduleModule = "decode_schedule";

    /// <summary>The schedule kernel's entry name.</summary>
    public const string ScheduleKernel = "mla_decode_schedule";

    /// <summary>The split-KV decode module.</summary>
    public const string DecodeModule = "decode_splitkv";

    /// <summary>The combine module.</summary>
    public const string CombineModule = "decode_combine";

    /// <summary>The split-KV variants' rows per CTA (16 × row groups).</summary>
    public static IReadOnlyList<int> RowsPerCtaOptions { get; } = [16, 32, 64];

    /// <summary>Dynamic shared memory of the schedule kernel: 4·batch bytes (block counts).</summary>
    /// <param name="batch">b.</param>
    /// <returns>Bytes.</returns>
    public static int ScheduleSharedMemoryBytes(int batch) => 4 * batch;

    /// <summary>
    /// Dynamic shared memory of a split-KV CTA (<c>DecodeSmem&lt;STAGES, RG&gt;</c>): sQ M×576 and
    /// STAGES K tiles of 64×576 in 2-byte elements, sP M×64, per-warp row max/sum (8 × 16 fp32 each), and
    /// per-row rescale factors and sums (M fp32 each). 230,912 bytes for M = 64 with 2 stages, 157,184 with 1.
    /// </summary>
    /// <param name="stages">1 or 2.</param>
    /// <param name="rowsPerCta">16, 32 or 64.</param>
    /// <returns>Bytes.</returns>
    public static int DecodeSharedMemoryBytes(int stages, int rowsPerCta) =>
        (rowsPerCta * MaxHeadDim * 2) + (stages * BlockN * MaxHeadDim * 2) + (rowsPerCta * BlockN * 2) + (2 * Warps * 16 * 4) + (2 * rowsPerCta * 4);

    /// <summary>The rows per CTA for a number of rows per KV head: the smallest of 16, 32, 64 that holds them, else 64.</summary>
    /// <param name="rowsPerKvHead">s_q · h_q / h_kv.</param>
    /// <returns>16, 32 or 64.</returns>
    public static int RowsPerCta(int rowsPerKvHead) => rowsPerKvHead <= 16 ? 16 : rowsPerKvHead <= 32 ? 32 : BlockM;

    /// <summary>The split-KV kernel's entry name: <c>mla_decode_splitkv_&lt;dtype&gt;_m&lt;rows&gt;[_1stage]</c>.</summary>
    /// <param name="dtype">"bf16" or "fp16".</param>
    /// <param name="rowsPerCta">16, 32 or 64.</param>
    /// <param name="stages">1 (only with 64 rows) or 2.</param>
    /// <returns>The name.</returns>
    public static string DecodeKernel(string dtype, int rowsPerCta, int stages) =>
        $"mla_decode_splitkv_{dtype}_m{rowsPerCta}{(stages == 1 ? "_1stage" : string.Empty)}";

    /// <summary>The combine kernel's entry name.</summary>
    /// <param name="dtype">"bf16" or "fp16".</param>
    /// <returns>The name.</returns>
    public static string CombineKernel(string dtype) => $"mla_decode_combine_{dtype}";

    /// <summary>Grid and block of the split-KV kernel: (ceil(rows / M), h_kv, num_parts) × 256.</summary>
    /// <param name="shape">The decode shape.</param>
    /// <param name="numParts">The plan's part count.</param>
    /// <param name="rowsPerCta">M; by default <see cref="RowsPerCta"/> of the shape.</param>
    /// <returns>The grid and block.</returns>
    public static (Dim3 Grid, Dim3 Block) Decode(MlaDecodeShape shape, int numParts, int rowsPerCta = 0)
    {
        var m = rowsPerCta > 0 ? rowsPerCta : RowsPerCta(shape.RowsPerKvHead);
        return (new Dim3((uint)((shape.RowsPerKvHead + m - 1) / m), (uint)shape.KvHeads, (uint)numParts), new Dim3(Threads));
    }

    /// <summary>Grid and block of the combine kernel: (ceil(rows / 8), h_kv, batch) × 256, one warp per row.</summary>
    /// <param name="shape">The decode shape.</param>
    /// <returns>The grid and block.</returns>
    public static (Dim3 Grid, Dim3 Block) Combine(MlaDecodeShape shape) =>
        (new Dim3((uint)((shape.RowsPerKvHead + CombineWarps - 1) / CombineWarps), (uint)shape.KvHeads, (uint)shape.Batch), new Dim3(CombineThreads));
}
