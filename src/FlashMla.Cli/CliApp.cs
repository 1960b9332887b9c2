using System.CommandLine;
using System.CommandLine.Help;
using FlashMla.Cli.Commands;

namespace FlashMla.Cli;

/// <summary>Exit codes of the <c>flashmla</c> tool.</summary>
internal static class ExitCodes
{
    public const int Success = 0;
    /// <summary>A failure at run time: mismatch in <c>verify</c>, backend not available, device error.</summary>
    public const int Failure = 1;
    /// <summary>The command line is wrong.</summary>
    public const int Usage = 2;
}

/// <summary>A usage error found after parsing (exit code 2).</summary>
internal sealed class CliUsageException(string message) : Exception(message);

/// <summary>A run-time failure with a message meant for the user (exit code 1, no stack trace).</summary>
internal sealed class CliFailureException(string message) : Exception(message);

/// <summary>Builds the command tree and runs it; the entry point used by <see cref="Program"/> and the tests.</summary>
internal static class CliApp
{
    /// <summary>The command name shown in help (the executable is FlashMla.Cli, also copied as flashmla).</summary>
    public const string Name = "flashmla";

    public static Command BuildRoot(CliContext context)
    {
        // A plain Command rather than RootCommand, so that help says "flashmla" whatever the executable is called.
        var root = new Command(
            Name,
            "FlashMLA.NET: multi-head latent attention (MLA) decoding with the semantics of FlashMLA's dense decode.")
        {
            new HelpOption(),
            new VersionOption(),
        };
        root.Subcommands.Add(InfoCommand.Create(context));
        root.Subcommands.Add(DecodeCommand.Create(context));
        root.Subcommands.Add(VerifyCommand.Create(context));
        root.Subcommands.Add(BenchCommand.Create(context));
        root.Subcommands.Add(BenchAppendCommand.Create(context));
        return root;
    }

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(args);
        var context = new CliContext(stdout, stderr);
        var root = BuildRoot(context);
        var parseResult = root.Parse(args);
        if (parseResult.Errors.Count > 0 && parseResult.Action is not HelpAction)
        {
            foreach (var error in parseResult.Errors)
            {
                stderr.WriteLine($"error: {error.Message}");
            }
            var command = parseResult.CommandResult.Command;
            var commandPath = ReferenceEquals(command, root) ? Name : $"{Name} {command.Name}";
            stderr.WriteLine($"Run '{commandPath} --help' for usage.");
            return ExitCodes.Usage;
        }

        var invocation = new InvocationConfiguration
        {
            Output = stdout,
            Error = stderr,
            EnableDefaultExceptionHandler = false,
        };
        return parseResult.Invoke(invocation);
    }

    /// <summary>Wraps a command body: maps the CLI's exceptions to exit codes and plain messages.</summary>
    public static int Guard(CliContext context, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (CliUsageException e)
        {
            context.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.Usage;
        }
        catch (CliFailureException e)
        {
            context.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.Failure;
        }
        catch (OutOfMemoryException e)
        {
            context.Error.WriteLine($"error: out of memory: {e.Message}");
            return ExitCodes.Failure;
        }
        catch (Exception e)
        {
            context.Error.WriteLine($"error: {e.GetType().Name}: {e.Message}");
            if (Environment.GetEnvironmentVariable("FLASHMLA_DEBUG") is { Length: > 0 })
            {
                context.Error.WriteLine(e.ToString());
            }
            else
            {
                context.Error.WriteLine("(set FLASHMLA_DEBUG=1 for the stack trace)");
            }
            return ExitCodes.Failure;
        }
    }
}
