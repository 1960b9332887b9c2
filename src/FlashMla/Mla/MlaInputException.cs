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

    /// <summary>A KV cache append's slot mapping holds a slot outside <c>[0, num_blocks · page_block_size)</c>
    /// that is not the padding slot −1 (error flag bit 4 of the append's record; bit 3 is the
    /// decode's merge flag).</summary>
    SlotOutOfRange = 16,
}

/// <summary>
/// Thrown after a decode when the GPU kernels found invalid data in inputs that only the device can
/// see (sequence lengths or block ids). The kernels skip the offending reads, so the outputs of the
/// named request are not meaningful; outputs of other requests are. Also thrown after a KV cache
/// append whose device-resident slot mapping held a slot outside the cache
/// (<see cref="MlaInputError.SlotOutOfRange"/>): those tokens were not written, the others were.
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

    /// <summary>Creates the exception of a rejected slot: the lowest offending token and its slot.</summary>
    /// <param name="tokenIndex">The token's index in the append (its row of the slot mapping).</param>
    /// <param name="slot">The token's slot.</param>
    /// <param name="message">The error message.</param>
    internal MlaInputException(int tokenIndex, int slot, string message)
        : base(message)
    {
        RequestIndex = -1;
        TokenIndex = tokenIndex;
        Slot = slot;
        Reason = MlaInputError.SlotOutOfRange;
    }

    /// <summary>The index in the batch of the offending request, or −1 when unknown.</summary>
    public int RequestIndex { get; }

    /// <summary>What was wrong with the request's input.</summary>
    public MlaInputError Reason { get; }

    /// <summary>For <see cref="MlaInputError.SlotOutOfRange"/>: the lowest offending token of the append (its row of the slot mapping); otherwise −1.</summary>
    public int TokenIndex { get; } = -1;

    /// <summary>For <see cref="MlaInputError.SlotOutOfRange"/>: the slot that token had; otherwise null.</summary>
    public int? Slot { get; }
}
