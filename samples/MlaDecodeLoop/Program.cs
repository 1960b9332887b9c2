// Decode steps of a stack of MLA attention layers with DeepSeek-V2-Lite's attention shapes:
//   dotnet run --project samples/MlaDecodeLoop -c Release -- [--backend auto|cpu|cuda] [--layers N] [--steps N] [--seed N]
// Exit codes: 0 when every check passed, 1 when one failed or the backend cannot run, 2 for a wrong command line.
namespace MlaDecodeLoop;

internal static class Program
{
    public static int Main(string[] args) => DecodeLoop.Run(args, Console.Out, Console.Error);
}
