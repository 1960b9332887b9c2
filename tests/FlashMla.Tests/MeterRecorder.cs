using System.Diagnostics.Metrics;
using FlashMla.Mla;

namespace FlashMla.Tests;

/// <summary>One measurement of a <c>FlashMla</c> instrument.</summary>
/// <param name="Instrument">The instrument's name.</param>
/// <param name="Value">The value.</param>
/// <param name="Tags">The tags.</param>
public sealed record Measurement(string Instrument, long Value, IReadOnlyDictionary<string, object?> Tags)
{
    /// <summary>The tag <paramref name="key"/> as a string, or null.</summary>
    /// <param name="key">The tag key.</param>
    /// <returns>The value.</returns>
    public string? Tag(string key) => Tags.TryGetValue(key, out var value) ? value?.ToString() : null;
}

/// <summary>
/// Records every measurement of the library's meter (<see cref="MlaMetrics.MeterName"/>) while it
/// lives. Tests that use it belong to <see cref="MetricsCollection"/>, so that no other test's
/// decodes are counted.
/// </summary>
public sealed class MeterRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly Lock _lock = new();
    private readonly List<Measurement> _measurements = [];

    /// <summary>Starts listening.</summary>
    public MeterRecorder()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == MlaMetrics.MeterName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var copy = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var tag in tags)
            {
                copy[tag.Key] = tag.Value;
            }

            lock (_lock)
            {
                _measurements.Add(new Measurement(instrument.Name, value, copy));
            }
        });
        _listener.Start();
    }

    /// <summary>The measurements of instrument <paramref name="name"/> so far.</summary>
    /// <param name="name">The instrument's name.</param>
    /// <returns>The measurements.</returns>
    public IReadOnlyList<Measurement> Of(string name)
    {
        lock (_lock)
        {
            return [.. _measurements.Where(m => m.Instrument == name)];
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _listener.Dispose();
}

/// <summary>The tests that count the library's metrics: run alone, since the meter is process-wide.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MetricsCollection
{
    /// <summary>The collection name.</summary>
    public const string Name = "Metrics";
}
