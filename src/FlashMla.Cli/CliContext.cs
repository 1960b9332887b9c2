using Spectre.Console;

namespace FlashMla.Cli;

/// <summary>Where a command writes: results to <see cref="Out"/>, progress and diagnostics to <see cref="Error"/>.</summary>
internal sealed class CliContext
{
    public CliContext(TextWriter stdout, TextWriter stderr)
    {
        Out = stdout;
        Error = stderr;
        OutConsole = CreateConsole(stdout, ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected);
        ErrorConsole = CreateConsole(stderr, ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected);
    }

    public TextWriter Out { get; }

    public TextWriter Error { get; }

    /// <summary>Spectre console on standard output (tables).</summary>
    public IAnsiConsole OutConsole { get; }

    /// <summary>Spectre console on standard error (progress).</summary>
    public IAnsiConsole ErrorConsole { get; }

    /// <summary>True when progress can be drawn live (standard error is a terminal).</summary>
    public bool ErrorIsInteractive => ErrorConsole.Profile.Capabilities.Interactive;

    /// <summary>Writes a diagnostic line to standard error.</summary>
    public void Diag(string message) => Error.WriteLine(message);

    private static IAnsiConsole CreateConsole(TextWriter writer, bool terminal)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = terminal ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (!terminal)
        {
            // Redirected output: do not wrap wide tables at 80 columns.
            console.Profile.Width = 240;
        }
        return console;
    }
}
