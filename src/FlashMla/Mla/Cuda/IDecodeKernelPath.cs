using FlashMla.Cuda;
using FlashMla.Kernels;
using FlashMla.Tensors;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// A family of split-KV decode kernels (a "kernel path"): the mma.sync kernels of
/// decode_splitkv.cu, say, or an sm_90a-only wgmma/TMA family. <see cref="CudaMlaDecoder"/>
/// validates a call, checks the plan, asks the registered paths in order
/// (<see cref="DecodeKernelPaths"/>) and enqueues the first that supports the call; the plan
/// (parts, num_splits, the split workspace, the error record), the schedule kernel and the
/// combine kernel are shared by every path.
/// </summary>
/// <remarks>
/// A path is created once per decoder (<see cref="DecodePathRegistration.Create"/>), when it
/// loads its module and raises its kernels' shared-memory limits; it must not throw when its
/// module is not built for the device's target or its kernels do not fit, but report that
/// through <see cref="Unavailable"/>. Its kernels take <see cref="DecodeParams"/> (or a struct
/// that begins with it, built from <see cref="DecodeLaunch.CommonParams"/>) and write the final
/// output of unsplit request pieces and the split workspace of split ones, exactly as
/// decode_splitkv.cu does, and merge split requests themselves when
/// <see cref="DecodeLaunch.MergeInKernel"/> (with split_merge.cuh); otherwise the shared combine
/// completes the call.
/// </remarks>
internal interface IDecodeKernelPath
{
    /// <summary>The path's name and module.</summary>
    DecodePathRegistration Registration { get; }

    /// <summary>Null when the path can run on this decoder's device; otherwise why not.</summary>
    string? Unavailable { get; }

    /// <summary>Whether the path supports a problem (its shape, element types, KV format and layout) on this device.</summary>
    /// <param name="problem">The validated problem.</param>
    /// <returns>Yes, or no with the reason and the parameter it concerns.</returns>
    KernelSupport Supports(in MlaDecodeProblem problem);

    /// <summary>What the path launches for a problem it supports, with <paramref name="numParts"/> schedule parts.</summary>
    /// <param name="problem">The problem.</param>
    /// <param name="numParts">The plan's number of parts.</param>
    /// <returns>The kernel and its grid.</returns>
    KernelPathInfo Describe(in MlaDecodeProblem problem, int numParts);

    /// <summary>Enqueues the split-KV kernel of a call it supports, with <see cref="DecodeLaunch.DependentLaunch"/> (the decoder enqueues the combine after it unless <see cref="DecodeLaunch.MergeInKernel"/>).</summary>
    /// <param name="launch">The call.</param>
    void Enqueue(in DecodeLaunch launch);
}

/// <summary>A kernel path's entry in <see cref="DecodeKernelPaths.All"/>.</summary>
/// <param name="Name">A short name ("mma.sync"), reported by <see cref="KernelPathInfo.Path"/>.</param>
/// <param name="Module">The module (kernels/&lt;module&gt;.cu) of its split-KV kernels.</param>
/// <param name="Create">Creates the path for a decoder.</param>
internal sealed record DecodePathRegistration(string Name, string Module, Func<DecodePathEnvironment, IDecodeKernelPath> Create);

/// <summary>What a path is created for: the context's kernel library, the shared-memory limit to plan with, and whether the caller chose the paths.</summary>
/// <param name="Kernels">The kernel library (its target is the device's).</param>
/// <param name="SharedMemoryLimitBytes">The dynamic shared memory per block the path may plan with (at most the device's opt-in limit).</param>
/// <param name="PathsChosenByCaller">
/// True when the decoder asks only paths its creator named: a path then takes every call it can
/// compute, and skips the rules by which it leaves calls it computes slower than a later path.
/// </param>
internal sealed record DecodePathEnvironment(KernelLibrary Kernels, int SharedMemoryLimitBytes, bool PathsChosenByCaller = false)
{
    /// <summary>The device.</summary>
    public CudaDevice Device => Kernels.Context.Device;
}

/// <summary>Rules that several kernel paths share.</summary>
internal static class DecodePathRules
{
    /// <summary>
    /// Whether a path whose kernels read a dense cache and compute in one element type (q, the
    /// cache and the output alike) supports a problem's types and format.
    /// </summary>
    /// <param name="problem">The problem.</param>
    /// <param name="pathName">The path's name, for the reasons.</param>
    /// <param name="types">The element types the path has kernels for.</param>
    /// <returns>The answer.</returns>
    public static KernelSupport DenseSingleType(in MlaDecodeProblem problem, string pathName, IReadOnlyCollection<ElementType> types)
    {
        var q = problem.QueryType;
        if (!problem.KvFormat.IsDense)
        {
            return KernelSupport.No($"the {pathName} kernels read dense KV caches; kCache's format is {problem.KvFormat}", "kCache");
        }

        if (problem.KvFormat.ElementType != q)
        {
            return KernelSupport.No(
                $"the {pathName} kernels need q, the KV cache and the output in one element type; q is {q.ShortName()}, kCache {problem.KvFormat}",
                "kCache");
        }

        if (problem.OutputType != q)
        {
            return KernelSupport.No(
                $"the {pathName} kernels need q, the KV cache and the output in one element type; q is {q.ShortName()}, output {problem.OutputType.ShortName()}",
                "output");
        }

        return types.Contains(q)
            ? KernelSupport.Yes
            : KernelSupport.No($"the {pathName} kernels are built for [{string.Join(", ", types.Select(t => t.ShortName()))}], not {q.ShortName()}", "q");
    }

    /// <summary>The grid of a path whose CTAs take <paramref name="rowsPerCta"/> query rows of one KV head and one schedule part: (ceil(rows / rows per CTA), h_kv, num_parts).</summary>
    /// <param name="shape">The shape.</param>
    /// <param name="rowsPerCta">Query rows per CTA.</param>
    /// <param name="numParts">The plan's parts.</param>
    /// <returns>The grid.</returns>
    public static Dim3 Grid(MlaDecodeShape shape, int rowsPerCta, int numParts) =>
        new((uint)((shape.RowsPerKvHead + rowsPerCta - 1) / rowsPerCta), (uint)shape.KvHeads, (uint)numParts);
}

/// <summary>A path's answer to <see cref="IDecodeKernelPath.Supports"/>.</summary>
/// <param name="IsSupported">Whether the path supports the problem.</param>
/// <param name="Reason">Why not.</param>
/// <param name="ParamName">The decode parameter the reason concerns (q, kCache, output, …).</param>
internal readonly record struct KernelSupport(bool IsSupported, string? Reason, string? ParamName)
{
    /// <summary>Supported.</summary>
    public static KernelSupport Yes => new(true, null, null);

    /// <summary>Not supported, because of <paramref name="paramName"/>.</summary>
    /// <param name="reason">Why.</param>
    /// <param name="paramName">The parameter.</param>
    /// <returns>The answer.</returns>
    public static KernelSupport No(string reason, string paramName) => new(false, reason, paramName);
}

/// <summary>
/// One validated decode call as the decoder hands it to a path: the problem, the tensors'
/// addresses and layouts, the plan whose workspace it uses, the options and the stream.
/// </summary>
internal readonly struct DecodeLaunch
{
    public required MlaDecodeProblem Problem { get; init; }

    public required ulong Q { get; init; }

    public required TensorLayout QLayout { get; init; }

    public required ulong KCache { get; init; }

    public required ulong BlockTable { get; init; }

    public required TensorLayout BlockTableLayout { get; init; }

    public required ulong CacheSeqlens { get; init; }

    public required ulong Output { get; init; }

    public required TensorLayout OutputLayout { get; init; }

    public required ulong Lse { get; init; }

    public required TensorLayout LseLayout { get; init; }

    public required CudaDecodePlan Plan { get; init; }

    public required bool Causal { get; init; }

    public required float SoftmaxScale { get; init; }

    public required CudaStream Stream { get; init; }

    /// <summary>
    /// Whether the kernel merges the pieces of split requests itself (<c>DecodeParams.merge</c>
    /// points to the plan's merge counters): the decoder does so when the grid fits on the device
    /// at once. When false, the decoder enqueues the combine kernel after the split-KV kernel.
    /// </summary>
    public required bool MergeInKernel { get; init; }

    /// <summary>Whether the split-KV kernel is launched with programmatic dependent launch (sm_90 and newer).</summary>
    public required bool DependentLaunch { get; init; }

    /// <summary>The parameters every path's split-KV kernel takes (or begins with).</summary>
    /// <returns>The struct.</returns>
    public DecodeParams CommonParams()
    {
        var shape = Problem.Shape;
        var qs = QLayout.Strides;
        var ks = Problem.KvLayout.Strides;
        var os = OutputLayout.Strides;
        var ls = LseLayout.Strides;
        return new DecodeParams
        {
            Q = Q,
            KCache = KCache,
            BlockTable = BlockTable,
            CacheSeqlens = CacheSeqlens,
            Output = Output,
            Lse = Lse,
            OAccum = Plan.OAccum.Pointer,
            LseAccum = Plan.LseAccum.Pointer,
            Parts = Plan.Parts.Pointer,
            NumSplits = Plan.NumSplits.Pointer,
            Error = Plan.Errors.Pointer,
            Merge = MergeInKernel ? Plan.Merge.Pointer : 0,
            QBatchStride = qs[0],
            QSeqStride = qs[1],
            QHeadStride = qs[2],
            KBlockStride = ks[0],
            KRowStride = ks[1],
            KHeadStride = ks[2],
            BtBatchStride = BlockTableLayout.Strides[0],
            OBatchStride = os[0],
            OSeqStride = os[1],
            OHeadStride = os[2],
            LseBatchStride = ls[0],
            LseHeadStride = ls[1],
            Batch = shape.Batch,
            SQ = shape.QueryLength,
            HQ = shape.QueryHeads,
            HKv = shape.KvHeads,
            Group = shape.Group,
            Rows = shape.RowsPerKvHead,
            HeadDim = shape.HeadDim,
            PageBlockSize = shape.PageBlockSize,
            NumBlocks = shape.NumBlocks,
            MaxBlocksPerSeq = shape.MaxBlocksPerSequence,
            Causal = Causal ? 1 : 0,
            NumParts = Plan.NumParts,
            ScaleLog2 = (float)(SoftmaxScale * Log2E),
        };
    }

    /// <summary>log2(e): softmax scales are passed in the kernels' base-2 domain.</summary>
    private const double Log2E = 1.4426950408889634;
}
