using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace FlashMla.Tests;

/// <summary>
/// Seeds for randomized tests. Each call gives a different seed derived from the caller's name, a
/// per-name counter and a base seed; the base is 0 unless the environment variable
/// <c>FLASHMLA_TEST_SEED</c> is set (set it to explore new inputs; CI runs are reproducible).
/// Always put the seed in failure messages (<see cref="Testing.DecodeCaseSpec"/> does).
/// </summary>
public static class TestSeeds
{
    private static readonly ConcurrentDictionary<string, int> Counters = new(StringComparer.Ordinal);

    /// <summary>The base seed (from <c>FLASHMLA_TEST_SEED</c>, default 0).</summary>
    public static int BaseSeed { get; } =
        int.TryParse(Environment.GetEnvironmentVariable("FLASHMLA_TEST_SEED"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var seed)
            ? seed
            : 0;

    /// <summary>A fresh seed for the calling test: hash(base, name, n) for the n-th call with this name.</summary>
    /// <param name="name">The test name (defaults to the calling member) plus any case description.</param>
    /// <returns>A non-negative seed.</returns>
    public static int Next([CallerMemberName] string name = "")
    {
        var counter = Counters.AddOrUpdate(name, 0, (_, n) => n + 1);
        return Derive(name, counter);
    }

    /// <summary>The seed for a given name and counter (stable across processes and platforms).</summary>
    /// <param name="name">The name.</param>
    /// <param name="counter">The counter.</param>
    /// <returns>A non-negative seed.</returns>
    public static int Derive(string name, int counter)
    {
        // FNV-1a over the UTF-16 code units, then the counter and base seed, then a final mix.
        var hash = 14695981039346656037UL;
        foreach (var ch in name)
        {
            hash = (hash ^ ch) * 1099511628211UL;
        }

        hash = (hash ^ (uint)counter) * 1099511628211UL;
        hash = (hash ^ (uint)BaseSeed) * 1099511628211UL;
        hash ^= hash >> 33;
        hash *= 0xFF51AFD7ED558CCDUL;
        hash ^= hash >> 33;
        return (int)(hash & 0x7FFF_FFFF);
    }
}
