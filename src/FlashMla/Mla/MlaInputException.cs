namespace FlashMla.Mla;

/// <summary>Why a request's device-resident input was rejected by a kernel.</summary>
/// <remarks>The non-zero values equal the bits of the kernels' error-record flags word.</remarks>
public enum MlaInputError
{
    /// <summary>No specific reason is known.</summary>
    Unknown = 0,

    /// <summary>The request's <c>cache_seqlens</c> entry is negative or exceeds
    /// <c>max_blocks_per_seq · page_block_size</c> (error flag bit 0).</summary>
    SequenceLengthOutOfRange = 1,

    /// <summary>A block-table entry of a page in use is outside <c>[0, num_blocks)</c>
    /// (error flag bit 1).</summary>
    BlockIdOutOfRange = 2,
}

/// <summary>
/// Thrown after a decode when the GPU kernels found invalid data in inputs that only the device can
/// see (sequence lengths or block ids). The kernels skip the offending reads, so the outputs of the
/// named request are not meaningful; outputs of other requests are.
/// </summary>
public sealed class MlaInputException : Exception
{
    /// <summary>Creates an exception with no request information.</summary>
    public MlaInputException()
        : this("The decode inputs were invalid.")
    {
    }

    /// <summary>Creates an exception with a message and no request information.</summary>
    /// <param name="message">The error message.</param>
    public MlaInputException(string message)
        : base(message)
    {
        RequestIndex = -1;
    }

    /// <summary>Creates an exception with a message, an inner exception and no request information.</summary>
    /// <param name="message">The error message.</param>
    /// <param name="innerException">The underlying error.</param>
    public MlaInputException(string message, Exception innerException)
        : base(message, innerException)
    {
        RequestIndex = -1;
    }

    /// <summary>Creates an exception naming the (lowest) offending request.</summary>
    /// <param name="requestIndex">The index in the batch of the request with invalid input.</param>
    /// <param name="reason">What was wrong.</param>
    /// <param name="message">The error message.</param>
    public MlaInputException(int requestIndex, MlaInputError reason, string message)
        : base(message)
    {
        RequestIndex = requestIndex;
        Reason = reason;
    }

    /// <summary>The index in the batch of the offending request, or −1 when unknown.</summary>
    public int RequestIndex { get; }

    /// <summary>What was wrong with the request's input.</summary>
    public MlaInputError Reason { get; }
}
