namespace FlashMla.Cuda;

/// <summary>
/// The CUDA driver library could not be loaded (or lacks required entry points). The message and
/// <see cref="Attempts"/> list every library name tried and why each failed.
/// </summary>
public class CudaLibraryLoadException : Exception
{
    /// <summary>Creates an exception with a default message.</summary>
    public CudaLibraryLoadException()
        : this("the CUDA driver library could not be loaded")
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public CudaLibraryLoadException(string message)
        : base(message)
    {
        Attempts = [];
    }

    /// <summary>Creates an exception with a message and an inner exception.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public CudaLibraryLoadException(string message, Exception innerException)
        : base(message, innerException)
    {
        Attempts = [];
    }

    /// <summary>Creates an exception from a load trace.</summary>
    /// <param name="message">The summary line.</param>
    /// <param name="attempts">Every name tried, with the reason it failed.</param>
    public CudaLibraryLoadException(string message, IReadOnlyList<CudaLibraryLoadAttempt> attempts)
        : base(FormatMessage(message, attempts))
    {
        Attempts = attempts;
    }

    /// <summary>Every library name tried, in order, with the reason each failed.</summary>
    public IReadOnlyList<CudaLibraryLoadAttempt> Attempts { get; }

    private static string FormatMessage(string message, IReadOnlyList<CudaLibraryLoadAttempt> attempts)
    {
        if (attempts.Count == 0)
        {
            return message;
        }

        var lines = attempts.Select(a => $"  {a.Name}: {a.Reason}");
        return message + Environment.NewLine + string.Join(Environment.NewLine, lines);
    }
}

/// <summary>One library name tried while loading the CUDA driver, and why it failed.</summary>
/// <param name="Name">The name or path passed to the native loader.</param>
/// <param name="Reason">The loader's error text.</param>
public sealed record CudaLibraryLoadAttempt(string Name, string Reason);
