using BenchmarkDotNet.Running;

namespace FlashMla.Benchmarks;

/// <summary>Runs the benchmarks BenchmarkDotNet's command line selects (<c>--filter '*'</c> for all).</summary>
internal static class Program
{
    private static void Main(string[] args) =>
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, new BenchConfig());
}
