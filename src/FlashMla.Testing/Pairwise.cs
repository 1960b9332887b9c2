namespace FlashMla.Testing;

/// <summary>
/// A small deterministic all-pairs (pairwise) covering-array generator: every pair of values of
/// every two factors that can appear together in a valid test appears in at least one generated test.
/// </summary>
/// <remarks>
/// Greedy, in the style of AETG without randomness. While some pair is uncovered, it builds one
/// candidate test from each of the first few uncovered pairs: fix that pair, then assign the other
/// factors (most values first) one at a time, each to the valid value that covers the most still
/// uncovered pairs with the factors assigned so far (ties: the value used least in earlier tests,
/// then the lowest). It keeps the candidate that covers the most uncovered pairs. Validity is judged on partial tests (−1 = unassigned), so the
/// constraint must accept every partial test that some valid full test extends.
/// </remarks>
public static class Pairwise
{
    private const int CandidatesPerStep = 24;

    /// <summary>Generates the covering set.</summary>
    /// <param name="levels">The number of values of each factor.</param>
    /// <param name="isValid">Whether a (partial) assignment is allowed; −1 marks an unassigned factor.</param>
    /// <returns>The tests, each an array of value indices.</returns>
    public static IReadOnlyList<int[]> Generate(IReadOnlyList<int> levels, Func<int[], bool> isValid)
    {
        ArgumentNullException.ThrowIfNull(levels);
        ArgumentNullException.ThrowIfNull(isValid);
        var n = levels.Count;
        var covered = new Dictionary<(int F1, int V1, int F2, int V2), bool>();
        var probe = new int[n];
        for (var f1 = 0; f1 < n; f1++)
        {
            for (var f2 = f1 + 1; f2 < n; f2++)
            {
                for (var v1 = 0; v1 < levels[f1]; v1++)
                {
                    for (var v2 = 0; v2 < levels[f2]; v2++)
                    {
                        Array.Fill(probe, -1);
                        probe[f1] = v1;
                        probe[f2] = v2;
                        if (isValid(probe))
                        {
                            covered[(f1, v1, f2, v2)] = false;
                        }
                    }
                }
            }
        }

        var order = Enumerable.Range(0, n).OrderByDescending(f => levels[f]).ThenBy(f => f).ToArray();
        var tests = new List<int[]>();
        var usage = levels.Select(l => new int[l]).ToArray();
        var remaining = covered.Count;
        while (remaining > 0)
        {
            int[]? best = null;
            var bestGain = -1;
            var tried = 0;
            foreach (var (pair, isCovered) in covered.OrderBy(p => p.Key))
            {
                if (isCovered)
                {
                    continue;
                }

                var candidate = Build(pair, levels, order, covered, usage, isValid);
                var gain = CountNew(candidate, covered);
                if (gain > bestGain)
                {
                    best = candidate;
                    bestGain = gain;
                }

                if (++tried == CandidatesPerStep)
                {
                    break;
                }
            }

            if (best is null || bestGain <= 0)
            {
                throw new InvalidOperationException("The pairwise generator could not make progress; the constraint is inconsistent.");
            }

            foreach (var key in PairsOf(best))
            {
                if (covered.TryGetValue(key, out var was) && !was)
                {
                    covered[key] = true;
                    remaining--;
                }
            }

            for (var f = 0; f < n; f++)
            {
                usage[f][best[f]]++;
            }

            tests.Add(best);
        }

        return tests;
    }

    /// <summary>Lists the (valid) pairs a full test covers.</summary>
    /// <param name="test">The test.</param>
    /// <returns>The pairs.</returns>
    public static IEnumerable<(int F1, int V1, int F2, int V2)> PairsOf(int[] test)
    {
        ArgumentNullException.ThrowIfNull(test);
        for (var f1 = 0; f1 < test.Length; f1++)
        {
            for (var f2 = f1 + 1; f2 < test.Length; f2++)
            {
                yield return (f1, test[f1], f2, test[f2]);
            }
        }
    }

    private static int[] Build((int F1, int V1, int F2, int V2) pair, IReadOnlyList<int> levels, int[] order, Dictionary<(int, int, int, int), bool> covered, int[][] usage, Func<int[], bool> isValid)
    {
        var test = new int[levels.Count];
        Array.Fill(test, -1);
        test[pair.F1] = pair.V1;
        test[pair.F2] = pair.V2;
        foreach (var f in order)
        {
            if (test[f] >= 0)
            {
                continue;
            }

            var bestValue = -1;
            var bestGain = -1;
            for (var v = 0; v < levels[f]; v++)
            {
                test[f] = v;
                if (!isValid(test))
                {
                    continue;
                }

                var gain = 0;
                for (var g = 0; g < test.Length; g++)
                {
                    if (g == f || test[g] < 0)
                    {
                        continue;
                    }

                    var key = g < f ? (g, test[g], f, v) : (f, v, g, test[g]);
                    if (covered.TryGetValue(key, out var isCovered) && !isCovered)
                    {
                        gain++;
                    }
                }

                if (gain > bestGain || (gain == bestGain && usage[f][v] < usage[f][bestValue]))
                {
                    bestGain = gain;
                    bestValue = v;
                }
            }

            if (bestValue < 0)
            {
                throw new InvalidOperationException($"No valid value for factor {f}; the constraint rejects a partial test that should be extendable.");
            }

            test[f] = bestValue;
        }

        return test;
    }

    private static int CountNew(int[] test, Dictionary<(int, int, int, int), bool> covered)
    {
        var count = 0;
        foreach (var key in PairsOf(test))
        {
            if (covered.TryGetValue(key, out var isCovered) && !isCovered)
            {
                count++;
            }
        }

        return count;
    }
}
