using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;

namespace FlashMla.Benchmarks;

/// <summary>
/// The machine's fp32 FMA peak, measured in the same run as the decodes: every core runs a
/// register-blocked loop of independent fused multiply-add chains over the widest accelerated
/// vector (Vector512, else Vector256), long enough to hide the start of the threads.
/// </summary>
public class FmaPeakBenchmarks : IFlopCount
{
    /// <summary>Independent accumulator chains per thread (covers FMA latency × issue width).</summary>
    public const int Chains = 12;

    /// <summary>Loop iterations per thread and call.</summary>
    public const int Iterations = 20_000_000;

    private float _sink;

    /// <summary>Threads: one per logical processor.</summary>
    public static int Threads => Environment.ProcessorCount;

    /// <summary>Lanes of the vector the loop uses.</summary>
    public static int Lanes => Vector512.IsHardwareAccelerated ? Vector512<float>.Count : Vector256<float>.Count;

    /// <summary>All cores, each running <see cref="Iterations"/> × <see cref="Chains"/> vector FMAs.</summary>
    [Benchmark]
    public void FmaPeak()
    {
        var results = new float[Threads];
        var threads = new Thread[Threads];
        for (var t = 0; t < Threads; t++)
        {
            var index = t;
            threads[t] = new Thread(() => results[index] = Vector512.IsHardwareAccelerated ? Loop512(Iterations) : Loop256(Iterations));
            threads[t].Start();
        }

        foreach (var thread in threads)
        {
            thread.Join();
        }

        _sink = results.Sum();
    }

    /// <summary>The last result, so the loops cannot be removed.</summary>
    public float Sink => _sink;

    /// <inheritdoc />
    public double FlopsPerCall(string method) => 2.0 * Threads * (double)Iterations * Chains * Lanes;

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Loop256(int n)
    {
        var m = Vector256.Create(0.9999999f);
        var c = Vector256.Create(1e-7f);
        Vector256<float> a0 = Vector256<float>.One, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
        Vector256<float> a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        for (var i = 0; i < n; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, m, c);
            a1 = Vector256.FusedMultiplyAdd(a1, m, c);
            a2 = Vector256.FusedMultiplyAdd(a2, m, c);
            a3 = Vector256.FusedMultiplyAdd(a3, m, c);
            a4 = Vector256.FusedMultiplyAdd(a4, m, c);
            a5 = Vector256.FusedMultiplyAdd(a5, m, c);
            a6 = Vector256.FusedMultiplyAdd(a6, m, c);
            a7 = Vector256.FusedMultiplyAdd(a7, m, c);
            a8 = Vector256.FusedMultiplyAdd(a8, m, c);
            a9 = Vector256.FusedMultiplyAdd(a9, m, c);
            a10 = Vector256.FusedMultiplyAdd(a10, m, c);
            a11 = Vector256.FusedMultiplyAdd(a11, m, c);
        }

        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Loop512(int n)
    {
        var m = Vector512.Create(0.9999999f);
        var c = Vector512.Create(1e-7f);
        Vector512<float> a0 = Vector512<float>.One, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
        Vector512<float> a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        for (var i = 0; i < n; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, m, c);
            a1 = Vector512.FusedMultiplyAdd(a1, m, c);
            a2 = Vector512.FusedMultiplyAdd(a2, m, c);
            a3 = Vector512.FusedMultiplyAdd(a3, m, c);
            a4 = Vector512.FusedMultiplyAdd(a4, m, c);
            a5 = Vector512.FusedMultiplyAdd(a5, m, c);
            a6 = Vector512.FusedMultiplyAdd(a6, m, c);
            a7 = Vector512.FusedMultiplyAdd(a7, m, c);
            a8 = Vector512.FusedMultiplyAdd(a8, m, c);
            a9 = Vector512.FusedMultiplyAdd(a9, m, c);
            a10 = Vector512.FusedMultiplyAdd(a10, m, c);
            a11 = Vector512.FusedMultiplyAdd(a11, m, c);
        }

        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }
}
