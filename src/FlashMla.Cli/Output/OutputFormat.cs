namespace FlashMla.Cli.Output;

internal enum OutputFormat
{
    Table,
    Json,
}
