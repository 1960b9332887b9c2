namespace FlashMla.Cli.Backends;

/// <summary>Turns <c>--backend auto|cpu|cuda</c> into a backend, with plain messages when CUDA is missing.</summary>
internal static class BackendSelector
{
    public static IDecodeBackend Select(string choice, CliContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        switch (choice)
        {
            case "cpu":
                return new CpuBackend();
            case "cuda":
                return CudaBackend.TryCreate(out var cuda, out var reason)
                    ? cuda
                    : throw new CliFailureException($"the CUDA backend is not available: {reason}");
            case "auto":
                if (CudaBackend.TryCreate(out var auto, out var why))
                {
                    return auto;
                }
                context.Diag($"using the CPU backend ({why})");
                return new CpuBackend();
            default:
                throw new CliUsageException($"unknown backend '{choice}' (expected auto, cpu or cuda)");
        }
    }
}
