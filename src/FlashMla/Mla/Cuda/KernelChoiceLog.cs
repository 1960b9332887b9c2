using FlashMla.Tensors;
using Microsoft.Extensions.Logging;

namespace FlashMla.Mla.Cuda;

/// <summary>
/// Logs which kernel path a decoder chose, once per distinct problem shape (the shape without the
/// cache's page count, which the choice does not depend on), for at most <see cref="Limit"/> shapes.
/// </summary>
internal sealed class KernelChoiceLog(ILogger logger)
{
    /// <summary>How many distinct shapes are logged before the log falls silent.</summary>
    public const int Limit = 256;

    private readonly Lock _lock = new();
    private readonly HashSet<ChoiceKey> _seen = [];
    private bool _full;

    /// <summary>Logs the choice of <paramref name="path"/> for <paramref name="problem"/> unless its shape was logged before.</summary>
    public void Chosen(in MlaDecodeProblem problem, IDecodeKernelPath path, int numParts)
    {
        if (!logger.IsEnabled(LogLevel.Debug))
        {
            return;
        }

        var key = new ChoiceKey(problem.Shape with { NumBlocks = 0 }, problem.QueryType, problem.KvFormat, problem.OutputType);
        lock (_lock)
        {
            if (_full || !_seen.Add(key))
            {
                return;
            }

            if (_seen.Count > Limit)
            {
                _full = true;
                MlaLog.KernelPathLogLimit(logger, Limit);
                return;
            }
        }

        var shape = problem.Shape;
        var text = $"b={shape.Batch} s_q={shape.QueryLength} h_q={shape.QueryHeads} h_kv={shape.KvHeads} d={shape.HeadDim} page={shape.PageBlockSize} max_blocks={shape.MaxBlocksPerSequence} q={problem.QueryType.ShortName()} kv={problem.KvFormat} out={problem.OutputType.ShortName()}";
        MlaLog.KernelPathChosen(logger, path.Registration.Name, text, path.Describe(problem, numParts).ToString());
    }

    private readonly record struct ChoiceKey(MlaDecodeShape Shape, ElementType QueryType, KvCacheFormat KvFormat, ElementType OutputType);
}
