namespace FlashMla.Testing;

/// <summary>A check of this library found a decode result wrong; the message says where and names the case.</summary>
public sealed class CheckFailedException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CheckFailedException()
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong, and the case.</param>
    public CheckFailedException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong, and the case.</param>
    /// <param name="innerException">The cause.</param>
    public CheckFailedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
