using FlashMla.Tensors;

namespace FlashMla.Cli.Inputs;

/// <summary>
/// Seeded random decode inputs generated the way FlashMLA's dense decode test does:
/// q and k = N(0,1)/10 clamped to [−1, 1]; with varlen each length is max(N(s_k, s_k/2), s_q);
/// the block table is a random permutation of all blocks (rows padded to a multiple of 256 tokens);
/// every cache slot past a request's length is NaN and block-table entries past a request's last
/// page hold 2147480000, so a backend that reads them shows it.
/// </summary>
internal static class RandomDecodeInputs
{
    /// <summary>Block id stored in unused block-table entries; it must never be dereferenced.</summary>
    public const int UnusedBlockId = 2147480000;

    public static DecodeInputs Create(DecodeCaseSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var rng = new Gaussian(spec.Seed);
        var seqlens = SeqLens(spec, rng);

        var maxLen = seqlens.Length == 0 ? 0 : seqlens.Max();
        var padded = (maxLen + 255) / 256 * 256;
        var maxBlocksPerSeq = Math.Max(1, (padded + spec.PageSize - 1) / spec.PageSize);
        var slotElements = spec.HeadsKv * spec.HeadDim;
        var kElements = (long)spec.Batch * maxBlocksPerSeq * spec.PageSize * slotElements;
        var qElements = (long)spec.Batch * spec.SeqQ * spec.HeadsQ * spec.HeadDim;
        if (kElements > Array.MaxLength || qElements > Array.MaxLength)
        {
            throw new CliFailureException(
                $"this case needs a {(double)kElements * spec.Dtype.SizeInBytes / (1L << 30):F1} GiB KV cache, more than one host array can hold; " +
                "use smaller --batch/--seqlen/--kv-heads");
        }
        var numBlocks = spec.Batch * maxBlocksPerSeq;

        var blockTable = new int[numBlocks];
        for (var i = 0; i < numBlocks; i++)
        {
            blockTable[i] = i;
        }
        rng.Shuffle(blockTable);

        // Which cache slots hold data: the first seqlen tokens of each request.
        var slotUsed = new bool[(long)numBlocks * spec.PageSize];
        for (var r = 0; r < spec.Batch; r++)
        {
            var pages = (seqlens[r] + spec.PageSize - 1) / spec.PageSize;
            for (var p = 0; p < maxBlocksPerSeq; p++)
            {
                ref var entry = ref blockTable[(r * maxBlocksPerSeq) + p];
                if (p >= pages)
                {
                    entry = UnusedBlockId;
                    continue;
                }
                var tokens = Math.Min(spec.PageSize, seqlens[r] - (p * spec.PageSize));
                for (var t = 0; t < tokens; t++)
                {
                    slotUsed[((long)entry * spec.PageSize) + t] = true;
                }
            }
        }

        var q = new ushort[qElements];
        FillRandom(q, spec.Dtype, rng);

        var k = new ushort[kElements];
        var nan = ElementBits.NaN(spec.Dtype);
        for (long slot = 0; slot < slotUsed.Length; slot++)
        {
            var span = k.AsSpan((int)(slot * slotElements), slotElements);
            if (slotUsed[slot])
            {
                FillRandom(span, spec.Dtype, rng);
            }
            else
            {
                span.Fill(nan);
            }
        }

        return new DecodeInputs
        {
            Spec = spec,
            NumBlocks = numBlocks,
            MaxBlocksPerSeq = maxBlocksPerSeq,
            Q = q,
            KCache = k,
            BlockTable = blockTable,
            Seqlens = seqlens,
        };
    }

    /// <summary>The per-request KV lengths: s_k, or max(N(s_k, s_k/2), s_q) with varlen; then zero-length requests.</summary>
    public static int[] SeqLens(DecodeCaseSpec spec, Gaussian rng)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(rng);
        var seqlens = new int[spec.Batch];
        for (var i = 0; i < spec.Batch; i++)
        {
            seqlens[i] = spec.Varlen
                ? (int)Math.Max(rng.Next(spec.SeqLenK, spec.SeqLenK / 2.0), spec.SeqQ)
                : spec.SeqLenK;
        }
        if (spec.ZeroLengthRequests > 0)
        {
            var order = Enumerable.Range(0, spec.Batch).ToArray();
            rng.Shuffle(order);
            foreach (var i in order.Take(spec.ZeroLengthRequests))
            {
                seqlens[i] = 0;
            }
        }
        return seqlens;
    }

    /// <summary>Fills with N(0,1)/10 clamped to [−1, 1], rounded to the element type.</summary>
    public static void FillRandom(Span<ushort> destination, ElementType kind, Gaussian rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        for (var i = 0; i < destination.Length; i++)
        {
            var v = Math.Clamp(rng.Next() / 10.0, -1.0, 1.0);
            destination[i] = ElementBits.FromFloat(kind, (float)v);
        }
    }
}

/// <summary>Seeded normal variates (Box–Muller over <see cref="Random"/>), reproducible for a seed.</summary>
internal sealed class Gaussian(int seed)
{
    private readonly Random _random = new(seed);
    private double? _spare;

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
            u1 = _random.NextDouble();
        }
        while (u1 <= double.Epsilon);
        var u2 = _random.NextDouble();
        var radius = Math.Sqrt(-2.0 * Math.Log(u1));
        _spare = radius * Math.Sin(2.0 * Math.PI * u2);
        return radius * Math.Cos(2.0 * Math.PI * u2);
    }

    public double Next(double mean, double stddev) => mean + (stddev * Next());

    public void Shuffle<T>(Span<T> values) => _random.Shuffle(values);
}
