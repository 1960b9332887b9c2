using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace FlashMla.Benchmarks;

/// <summary>
/// The configuration of every benchmark here: a short job (each decode takes tens of
/// milliseconds), allocations per call, and a GFLOP/s column computed from each benchmark's
/// <see cref="IFlopCount"/>.
/// </summary>
internal sealed class BenchConfig : ManualConfig
{
    public BenchConfig()
    {
        // In process: the benchmarks run in this build of the project (Release, with its own
        // settings) instead of a generated project built again per run.
        AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(15).WithInvocationCount(1).WithUnrollFactor(1)
            .WithToolchain(InProcessEmitToolchain.Instance));
        AddDiagnoser(MemoryDiagnoser.Default);
        AddColumn(new GflopsColumn());
        AddColumnProvider(DefaultColumnProviders.Instance);
        AddLogger(ConsoleLogger.Default);
        AddExporter(MarkdownExporter.GitHub);
        WithOptions(ConfigOptions.JoinSummary);
    }
}

/// <summary>A benchmark class that knows the floating-point work of one invocation.</summary>
public interface IFlopCount
{
    /// <summary>FLOPs of one call of the benchmark method, for the class's current parameters.</summary>
    /// <param name="method">The benchmark method's name.</param>
    /// <returns>The FLOP count.</returns>
    double FlopsPerCall(string method);
}

/// <summary>GFLOP/s = FLOPs per call / median time per call.</summary>
internal sealed class GflopsColumn : IColumn
{
    public string Id => nameof(GflopsColumn);

    public string ColumnName => "GFLOP/s";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => "FLOPs per call (the bench formula 2·b·s_q·h_q·s_k·(d + d_v), or the FMA loop's count) / median time, in 1e9/s";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) =>
        GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        var stats = report?.ResultStatistics;
        if (stats is null || Activator.CreateInstance(benchmarkCase.Descriptor.Type) is not IFlopCount counter)
        {
            return "-";
        }

        foreach (var parameter in benchmarkCase.Parameters.Items)
        {
            benchmarkCase.Descriptor.Type.GetProperty(parameter.Name)?.SetValue(counter, parameter.Value);
        }

        var flops = counter.FlopsPerCall(benchmarkCase.Descriptor.WorkloadMethod.Name);
        return (flops / stats.Median).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
    }

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;
}
