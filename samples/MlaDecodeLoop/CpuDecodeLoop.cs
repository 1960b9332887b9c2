using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace MlaDecodeLoop;

/// <summary>
/// The loop on the CPU backend: host step tables, the CPU cache writer and the CPU decoder. Each
/// layer's output is checked against the float64 reference on the same inputs.
/// </summary>
internal sealed class CpuDecodeLoop : IDecodeLoopBackend
{
    private readonly Gaussian _rng;
    private readonly int _maxBlocks;
    private readonly HostTensor<BFloat16>[] _caches;
    private readonly HostKvStepTables _prefill;
    private readonly HostKvStepTables _tables;
    private readonly CpuKvCacheWriter _writer = new();
    private readonly CpuMlaDecoder _decoder = new();
    private readonly CpuDecodePlan _plan;
    private readonly MlaDecodeOptions _options = new() { SoftmaxScale = AttentionShape.SoftmaxScale };

    // Per step, reused: the new tokens' c_KV [b, 512] and k_rope [b, 64], q [b, 1, h_q, 576], out, lse.
    private readonly HostTensor<BFloat16> _compressedKv = HostTensor<BFloat16>.Create(DecodeLoop.Rows, AttentionShape.LatentDim);
    private readonly HostTensor<BFloat16> _rope = HostTensor<BFloat16>.Create(DecodeLoop.Rows, AttentionShape.RopeDim);
    private readonly HostTensor<BFloat16> _q = HostTensor<BFloat16>.Create(DecodeLoop.Rows, 1, AttentionShape.QueryHeads, AttentionShape.HeadDim);
    private readonly HostTensor<BFloat16> _output = HostTensor<BFloat16>.Create(DecodeLoop.Rows, 1, AttentionShape.QueryHeads, AttentionShape.LatentDim);
    private readonly HostTensor<float> _lse = HostTensor<float>.Create(DecodeLoop.Rows, AttentionShape.QueryHeads, 1);

    public CpuDecodeLoop(LoopOptions options, int numPages, int maxBlocks)
    {
        _rng = new Gaussian(options.Seed);
        _maxBlocks = maxBlocks;
        _caches = new HostTensor<BFloat16>[options.Layers];
        for (var layer = 0; layer < options.Layers; layer++)
        {
            // [num_blocks, page_block_size, h_kv, 576]; slots no token occupies stay NaN.
            _caches[layer] = HostTensor<BFloat16>.Create(numPages, AttentionShape.PageBlockSize, AttentionShape.KvHeads, AttentionShape.HeadDim);
            _caches[layer].Span.Fill(BFloat16.NaN);
        }

        _prefill = new HostKvStepTables(DecodeLoop.Rows, maxBlocks, DecodeLoop.Prompts.Max());
        _tables = new HostKvStepTables(DecodeLoop.Rows, maxBlocks, tokensPerRequest: 1);
        _plan = _decoder.CreatePlan(DecodeLoop.Rows, 1, AttentionShape.QueryHeads, AttentionShape.KvHeads);
    }

    public string Description => $"backend: CPU ({Environment.ProcessorCount} threads), checked against the float64 reference";

    public void Prefill(PagedKvCacheAllocator allocator, KvRequestId[] batch)
    {
        // The prompts' latents [b · max_prompt, 576] (rows past a prompt are padding, slot −1).
        _prefill.Fill(allocator, batch);
        var latent = HostTensor<BFloat16>.Create(_prefill.SlotMapping.Layout.Shape[0], AttentionShape.HeadDim);
        foreach (var cache in _caches)
        {
            _prefill.CopyPages(cache);
            RandomInputs.Fill(latent.Span, _rng);
            _writer.Append(latent, _prefill.SlotMapping, cache);
        }
    }

    public StepReport Step(PagedKvCacheAllocator allocator, KvRequestId[] batch)
    {
        // <cpu-step>
        _tables.Fill(allocator, batch);                        // block table, lengths, slots, page copies
        _decoder.UpdatePlan(_plan, _tables.CacheSeqlens, _maxBlocks, AttentionShape.PageBlockSize);
        CompareResult? worstOut = null, worstLse = null;
        foreach (var cache in _caches)
        {
            _tables.CopyPages(cache);                          // copies on write first
            RandomInputs.Fill(_compressedKv.Span, _rng);       // stand-ins for c_KV = W_DKV·h
            RandomInputs.Fill(_rope.Span, _rng);               // and k_rope = RoPE(W_KR·h)
            _writer.Append(_compressedKv, _rope, _tables.SlotMapping, cache);
            RandomInputs.Fill(_q.Span, _rng);                  // stand-in for [q_nope·W_UK, RoPE(q_rope)]
            _decoder.Decode(_q, cache, _tables.BlockTable, _tables.CacheSeqlens, _plan, _output, _lse, _options);
            // (the model multiplies _output by W_UV, then W_O, here)
            // </cpu-step>
            var reference = NaiveMlaReference.Compute(_q, cache, _tables.BlockTable, _tables.CacheSeqlens, _options);
            var output = Compare.Check(TestTensors.ToDoubleArray(_output), reference.Output, Tolerance.ForOutput(ElementType.BFloat16, roundsProbabilities: false), _output.Layout.Shape);
            var lse = Compare.Check(TestTensors.ToDoubleArray(_lse), reference.Lse, Tolerance.Lse, _lse.Layout.Shape);
            worstOut = Worse(worstOut, output);
            worstLse = Worse(worstLse, lse);
        }

        return new StepReport(_tables.CacheSeqlens.Span.ToArray(), _tables.PageCopies.Count, worstOut!, worstLse!);
    }

    public void Dispose()
    {
    }

    /// <summary>The failing one, else the one with the larger error.</summary>
    internal static CompareResult Worse(CompareResult? a, CompareResult b) =>
        a is null || (a.Passed && !b.Passed) || (a.Passed == b.Passed && b.MaxAbsError > a.MaxAbsError) ? b : a;
}
