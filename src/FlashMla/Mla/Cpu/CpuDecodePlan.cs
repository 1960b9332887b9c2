namespace FlashMla.Mla.Cpu;

/// <summary>
/// A plan of <see cref="CpuMlaDecoder"/>: the schedule of one step's sequence lengths and the page
/// geometry it was computed for. Create it with <see cref="CpuMlaDecoder.CreatePlan"/>, update it
/// with <see cref="CpuMlaDecoder.UpdatePlan(CpuDecodePlan, FlashMla.Tensors.HostTensor{int}, int, int)"/> whenever the lengths change, then decode each layer.
/// </summary>
public sealed class CpuDecodePlan : MlaDecodePlan
{
    private PlanGeometry? _geometry;

    internal CpuDecodePlan(int batch, int queryLength, int queryHeads, int kvHeads, int numParts)
        : base(batch, queryLength, queryHeads, kvHeads, numParts)
    {
    }

    /// <summary>The schedule of the last update, or null before the first.</summary>
    public DecodeSchedule? Schedule { get; private set; }

    private protected override PlanGeometry? Geometry => _geometry;

    internal void Update(PlanGeometry geometry, DecodeSchedule schedule)
    {
        Schedule = schedule;
        _geometry = geometry;
    }
}
