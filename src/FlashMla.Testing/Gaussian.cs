namespace FlashMla.Testing;

/// <summary>
/// Seeded normal variates (Box–Muller over <see cref="Random"/>, both values of each pair used);
/// the same seed gives the same sequence on every platform.
/// </summary>
/// <param name="seed">The seed.</param>
public sealed class Gaussian(int seed)
{
    private double? _spare;

    /// <summary>The uniform generator underneath, for draws that are not normal (shuffles, choices).</summary>
    public Random Uniform { get; } = new(seed);

    /// <summary>A standard normal sample.</summary>
    /// <returns>The sample.</returns>
    public double Next()
    {
        if (_spare is { } spare)
        {
            _spare = null;
            return spare;
        }

        double u1;
        do
        {
            u1 = Uniform.NextDouble();
        }
        while (u1 <= double.Epsilon);
        var u2 = Uniform.NextDouble();
        var radius = Math.Sqrt(-2.0 * Math.Log(u1));
        _spare = radius * Math.Sin(2.0 * Math.PI * u2);
        return radius * Math.Cos(2.0 * Math.PI * u2);
    }

    /// <summary>A normal sample.</summary>
    /// <param name="mean">The mean.</param>
    /// <param name="stddev">The standard deviation.</param>
    /// <returns>The sample.</returns>
    public double Next(double mean, double stddev) => mean + (stddev * Next());

    /// <summary>Shuffles in place (Fisher–Yates on <see cref="Uniform"/>).</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="values">The values.</param>
    public void Shuffle<T>(Span<T> values) => Uniform.Shuffle(values);
}
