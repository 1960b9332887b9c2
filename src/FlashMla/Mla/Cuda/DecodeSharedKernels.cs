using System.Globalization;
using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Tensors;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// The kernels every kernel path shares: the schedule kernel (decode_schedule.cu), which fills a
/// plan's parts and num_splits from the device-resident lengths, and the combine kernels
/// (decode_combine.cu), which merge the split workspace into the output, one per output type.
/// </summary>
internal sealed class DecodeSharedKernels
{
    /// <summary>The schedule module.</summary>
    public const string ScheduleModule = "decode_schedule";

    /// <summary>The combine module.</summary>
    public const string CombineModule = "decode_combine";

    private readonly KernelEntry _schedule;
    private readonly Dictionary<ElementType, KernelEntry> _combine = [];

    /// <summary>Loads the modules (and the fill module, so that no JIT happens later).</summary>
    /// <param name="kernels">The kernel library.</param>
    /// <param name="sharedMemoryLimitBytes">The dynamic shared memory per block to plan with.</param>
    /// <exception cref="InvalidOperationException">A module is not built for the device's target.</exception>
    public DecodeSharedKernels(KernelLibrary kernels, int sharedMemoryLimitBytes)
    {
        _schedule = kernels.GetEntries(ScheduleModule).Single();
        var schedule = _schedule.Descriptor;
        var limit = Math.Min(sharedMemoryLimitBytes, _schedule.MaxDynamicSharedMemoryBytes);
        MaxBatch = schedule.SharedMemoryBytesPerRequest == 0 ? int.MaxValue : (limit - schedule.SharedMemoryBytes) / schedule.SharedMemoryBytesPerRequest;

        // Raised once here, so that no launch (inside a graph capture, say) has to.
        _schedule.EnsureSharedMemoryLimit(limit);
        foreach (var entry in kernels.GetEntries(CombineModule))
        {
            if (entry.Descriptor.OutputType is { } type)
            {
                _combine.Add(type, entry);
            }
        }

        _ = kernels.GetModule(DeviceFill.ModuleName);
    }

    /// <summary>The largest batch the schedule kernel's shared memory holds.</summary>
    public int MaxBatch { get; }

    /// <summary>What the schedule kernel needs per request, for messages.</summary>
    public string ScheduleLimitText => string.Create(
        CultureInfo.InvariantCulture, $"{_schedule.Descriptor.SharedMemoryBytesPerRequest} bytes of shared memory per request");

    /// <summary>Whether a combine kernel writes <paramref name="outputType"/>.</summary>
    /// <param name="outputType">The output's element type.</param>
    /// <returns>Whether.</returns>
    public bool HasCombine(ElementType outputType) => _combine.ContainsKey(outputType);

    /// <summary>Enqueues the schedule kernel for a plan (one CTA).</summary>
    /// <param name="plan">The plan.</param>
    /// <param name="cacheSeqlens">The device address of the int32 lengths.</param>
    /// <param name="capacity">max_blocks_per_seq · page_block_size.</param>
    /// <param name="stream">The stream.</param>
    public void EnqueueSchedule(CudaDecodePlan plan, ulong cacheSeqlens, int capacity, CudaStream stream)
    {
        var parameters = new ScheduleParams
        {
            CacheSeqlens = cacheSeqlens,
            Parts = plan.Parts.Pointer,
            NumSplits = plan.NumSplits.Pointer,
            Error = plan.Errors.Pointer,
            Batch = plan.Batch,
            NumParts = plan.NumParts,
            Capacity = capacity,
        };
        _schedule.Launch(new Dim3(1), parameters, stream, plan.Batch);
    }

    /// <summary>Enqueues the combine of a decode: grid (ceil(rows / rows per CTA), h_kv, b).</summary>
    /// <param name="launch">The decode call.</param>
    public void EnqueueCombine(in DecodeLaunch launch)
    {
        var combine = _combine[launch.Problem.OutputType];
        var shape = launch.Problem.Shape;
        var parameters = CombineParams.Of(launch.CommonParams());
        combine.Launch(CombineGrid(shape, combine.Descriptor.RowsPerCta), parameters, launch.Stream);
    }

    /// <summary>The combine grid: (ceil(rows / rows per CTA), h_kv, b).</summary>
    /// <param name="shape">The shape.</param>
    /// <param name="rowsPerCta">The combine kernel's rows per CTA.</param>
    /// <returns>The grid.</returns>
    internal static Dim3 CombineGrid(MlaDecodeShape shape, int rowsPerCta) =>
        new((uint)((shape.RowsPerKvHead + rowsPerCta - 1) / rowsPerCta), (uint)shape.KvHeads, (uint)shape.Batch);
}
