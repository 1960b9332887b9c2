using System.Globalization;
using FlashMla.Cuda;
using FlashMla.Mla;
using FlashMla.Testing;

namespace MlaDecodeLoop;

/// <summary>
/// DeepSeek-V2-Lite's attention shapes as the decode sees them after MLA's weight absorption.
/// </summary>
/// <remarks>
/// Around the calls of a step (none of which this sample computes; random inputs stand in):
/// the layer projects the hidden state to the compressed latent c_KV = W_DKV·h (512 wide) and to
/// the decoupled RoPE key k_rope = RoPE(W_KR·h) (64 wide); the cache stores exactly these two,
/// [c_KV, k_rope], 576 per token, shared by every head (h_kv = 1). The query of each head is
/// q = [q_nope·W_UK, RoPE(q_rope)]: W_UK, the key up-projection, is absorbed into the query so the
/// scores are taken against the latent directly. The decode's output (512 per head) is still in
/// the latent space: multiplying it by W_UV, the value up-projection (then W_O), happens after the
/// decode. The softmax scale stays that of the unabsorbed head, 1/√(128 + 64).
/// </remarks>
internal static class AttentionShape
{
    /// <summary>Query heads (num_attention_heads).</summary>
    public const int QueryHeads = 16;

    /// <summary>KV heads: one latent per token, shared by every query head.</summary>
    public const int KvHeads = 1;

    /// <summary>kv_lora_rank: the compressed latent c_KV, which is also the value (head_dim_v).</summary>
    public const int LatentDim = 512;

    /// <summary>qk_rope_head_dim: the decoupled RoPE key.</summary>
    public const int RopeDim = 64;

    /// <summary>A cached token and a query row: [c_KV, k_rope].</summary>
    public const int HeadDim = LatentDim + RopeDim;

    /// <summary>qk_nope_head_dim: a head's query/key width before the absorption.</summary>
    public const int QkNopeHeadDim = 128;

    /// <summary>Tokens per page of the cache.</summary>
    public const int PageBlockSize = 64;

    /// <summary>The softmax scale of the unabsorbed head: 1/√(qk_nope_head_dim + qk_rope_head_dim).</summary>
    public static float SoftmaxScale { get; } = 1f / MathF.Sqrt(QkNopeHeadDim + RopeDim);
}

/// <summary>The command line.</summary>
/// <param name="Backend">auto, cpu or cuda.</param>
/// <param name="Layers">Attention layers.</param>
/// <param name="Steps">Decode steps.</param>
/// <param name="Seed">The seed of the random inputs.</param>
internal sealed record LoopOptions(string Backend, int Layers, int Steps, int Seed)
{
    public const string Usage = "usage: MlaDecodeLoop [--backend auto|cpu|cuda] [--layers N (1-64, default 4)] [--steps N (1-64, default 8)] [--seed N]";

    /// <summary>Parses the arguments; null with a message on error.</summary>
    public static LoopOptions? Parse(string[] args, out string error)
    {
        var options = new LoopOptions("auto", 4, 8, 2024);
        error = string.Empty;
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            if (name is "-h" or "--help")
            {
                error = "help";
                return null;
            }

            if (i + 1 >= args.Length)
            {
                error = $"{name} needs a value.";
                return null;
            }

            var value = args[++i];
            switch (name)
            {
                case "--backend" when value is "auto" or "cpu" or "cuda":
                    options = options with { Backend = value };
                    break;
                case "--backend":
                    error = $"--backend must be auto, cpu or cuda; got '{value}'.";
                    return null;
                case "--layers" or "--steps" or "--seed":
                    if (!int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var number) || (name != "--seed" && (number < 1 || number > 64)))
                    {
                        error = $"{name} must be {(name == "--seed" ? "an integer" : "an integer in [1, 64]")}; got '{value}'.";
                        return null;
                    }

                    options = name switch
                    {
                        "--layers" => options with { Layers = number },
                        "--steps" => options with { Steps = number },
                        _ => options with { Seed = number },
                    };
                    break;
                default:
                    error = $"unknown option '{name}'.";
                    return null;
            }
        }

        return options;
    }
}

/// <summary>One step's outcome: the rows' lengths, the page copies and the worst comparison over the layers.</summary>
/// <param name="Lengths">cache_seqlens of the step.</param>
/// <param name="PageCopies">Copies on write the step ran (per layer).</param>
/// <param name="Output">The worst output comparison.</param>
/// <param name="Lse">The worst LSE comparison.</param>
internal sealed record StepReport(int[] Lengths, int PageCopies, CompareResult Output, CompareResult Lse)
{
    public bool Passed => Output.Passed && Lse.Passed;
}

/// <summary>A backend's decode loop: the prompts' prefill, then decode steps.</summary>
internal interface IDecodeLoopBackend : IDisposable
{
    /// <summary>What runs and what it is checked against.</summary>
    string Description { get; }

    /// <summary>Writes the pending prompt tokens of <paramref name="batch"/> into every layer's cache.</summary>
    void Prefill(PagedKvCacheAllocator allocator, KvRequestId[] batch);

    /// <summary>One decode step: tables, page copies, the new tokens' writes, the plan update and every layer's decode, checked.</summary>
    StepReport Step(PagedKvCacheAllocator allocator, KvRequestId[] batch);
}

/// <summary>The loop: requests of different lengths, a fork that shares a prompt, a request that finishes.</summary>
internal static class DecodeLoop
{
    /// <summary>The prompts' lengths; request 0 is forked at <see cref="ForkStep"/>, request 1 finishes after <see cref="FinishStep"/>.</summary>
    public static readonly int[] Prompts = [700, 129, 1500];

    /// <summary>The decode batch: the requests plus a row for the fork.</summary>
    public const int Rows = 4;

    /// <summary>The step before which request 0 is forked (a second continuation of its prompt and tokens so far).</summary>
    public const int ForkStep = 2;

    /// <summary>The step after which request 1 finishes (its pages go back to the allocator).</summary>
    public const int FinishStep = 5;

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var options = LoopOptions.Parse(args, out var message);
        if (options is null)
        {
            if (message == "help")
            {
                output.WriteLine(LoopOptions.Usage);
                return 0;
            }

            error.WriteLine($"error: {message}");
            error.WriteLine(LoopOptions.Usage);
            return 2;
        }

        var maxBlocks = (Prompts.Max() + options.Steps + AttentionShape.PageBlockSize - 1) / AttentionShape.PageBlockSize;
        var numPages = Rows * maxBlocks;
        IDecodeLoopBackend? backend;
        try
        {
            backend = CreateBackend(options, numPages, maxBlocks, output, error);
        }
        catch (Exception ex) when (ex is CudaException or NotSupportedException or InvalidOperationException)
        {
            error.WriteLine($"error: the CUDA backend cannot run here: {ex.Message}");
            return 1;
        }

        if (backend is null)
        {
            return 1;
        }

        using (backend)
        {
            output.WriteLine(
                $"{options.Layers} layers of MLA attention (h_q {AttentionShape.QueryHeads}, latent {AttentionShape.LatentDim} + RoPE {AttentionShape.RopeDim}, " +
                $"scale 1/sqrt({AttentionShape.QkNopeHeadDim + AttentionShape.RopeDim})), {Rows} rows, pages of {AttentionShape.PageBlockSize} tokens, {numPages} pages");
            output.WriteLine(backend.Description);

            var allocator = new PagedKvCacheAllocator(numPages, AttentionShape.PageBlockSize, maxBlocks);
            var requests = Prompts.Select(p => allocator.AddRequest(p)).ToList();
            backend.Prefill(allocator, [.. requests]);
            output.WriteLine($"prefill: prompts [{string.Join(", ", Prompts)}] written into every layer's cache; {allocator.FreePages} pages free");

            var failed = 0;
            for (var step = 0; step < options.Steps; step++)
            {
                if (step == ForkStep)
                {
                    requests.Add(allocator.Fork(requests[0]));
                    output.WriteLine($"step {step}: request 0 forked: the new request shares its {allocator.GetPages(requests[^1]).Length} pages");
                }

                foreach (var request in requests)
                {
                    allocator.Append(request, 1);
                }

                var report = backend.Step(allocator, [.. requests]);
                output.WriteLine(
                    $"step {step}: lengths [{string.Join(", ", report.Lengths)}], {report.PageCopies} page cop{(report.PageCopies == 1 ? "y" : "ies")}, " +
                    $"out max abs err {report.Output.MaxAbsError:E2} cos diff {report.Output.CosineDiff:E2}, lse max abs err {report.Lse.MaxAbsError:E2}: {(report.Passed ? "ok" : "MISMATCH")}");
                if (!report.Passed)
                {
                    failed++;
                    output.WriteLine($"  {report.Output.Message} {report.Lse.Message}".TrimEnd());
                }

                if (step == FinishStep && requests.Count > 1)
                {
                    allocator.Free(requests[1]);
                    requests.RemoveAt(1);
                    output.WriteLine($"step {step}: request 1 finished; {allocator.FreePages} pages free");
                }
            }

            output.WriteLine(failed == 0 ? $"all {options.Steps} steps match" : $"{failed} of {options.Steps} steps do not match");
            return failed == 0 ? 0 : 1;
        }
    }

    private static IDecodeLoopBackend? CreateBackend(LoopOptions options, int numPages, int maxBlocks, TextWriter output, TextWriter error)
    {
        if (options.Backend == "cpu")
        {
            return new CpuDecodeLoop(options, numPages, maxBlocks);
        }

        var usable = CudaDecodeLoop.Probe(out var reason);
        if (usable)
        {
            return new CudaDecodeLoop(options, numPages, maxBlocks);
        }

        if (options.Backend == "cuda")
        {
            error.WriteLine($"error: --backend cuda, but {reason}");
            return null;
        }

        output.WriteLine($"backend auto: CPU ({reason})");
        return new CpuDecodeLoop(options, numPages, maxBlocks);
    }
}
