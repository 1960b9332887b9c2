using Microsoft.Extensions.Logging;

namespace FlashMla.Tests;

/// <summary>One entry written to a <see cref="CollectingLogger"/>.</summary>
/// <param name="Level">The level.</param>
/// <param name="EventId">The event id.</param>
/// <param name="Message">The formatted message.</param>
/// <param name="State">The structured values (name → value), from the message template.</param>
public sealed record LogEntry(LogLevel Level, EventId EventId, string Message, IReadOnlyDictionary<string, object?> State);

/// <summary>A logger that keeps what it is given, for tests of the library's logging.</summary>
/// <param name="minimumLevel">The lowest level that is enabled.</param>
public sealed class CollectingLogger(LogLevel minimumLevel = LogLevel.Trace) : ILogger
{
    private readonly Lock _lock = new();
    private readonly List<LogEntry> _entries = [];

    /// <summary>A snapshot of the entries so far.</summary>
    public IReadOnlyList<LogEntry> Entries
    {
        get
        {
            lock (_lock)
            {
                return [.. _entries];
            }
        }
    }

    /// <summary>The entries with event id <paramref name="id"/>.</summary>
    /// <param name="id">The event id.</param>
    /// <returns>The entries.</returns>
    public IReadOnlyList<LogEntry> WithEvent(int id) => [.. Entries.Where(e => e.EventId.Id == id)];

    /// <inheritdoc/>
    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    /// <inheritdoc/>
    public bool IsEnabled(LogLevel logLevel) => logLevel >= minimumLevel;

    /// <inheritdoc/>
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        ArgumentNullException.ThrowIfNull(formatter);
        if (!IsEnabled(logLevel))
        {
            return;
        }

        var values = state is IEnumerable<KeyValuePair<string, object?>> pairs
            ? pairs.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal)
            : new Dictionary<string, object?>(StringComparer.Ordinal);
        lock (_lock)
        {
            _entries.Add(new LogEntry(logLevel, eventId, formatter(state, exception), values));
        }
    }
}
