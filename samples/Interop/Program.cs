// Recipes for memory that other libraries own: a CUDA tensor and the stream of TorchSharp, an ONNX
// Runtime OrtValue on CUDA, and the check that their 2-byte bfloat16 types hold the same bits as
// FlashMla.Numerics.BFloat16. The bfloat16 check runs anywhere; the recipes need a GPU and the
// libraries' native parts (see samples/README.md) and say so when those are missing.
string[] commands = ["bfloat16", "torch", "ort"];
var chosen = args.Length == 0 ? commands : args;
var unknown = chosen.Where(c => !commands.Contains(c)).ToArray();
if (unknown.Length > 0)
{
    Console.Error.WriteLine($"unknown command {string.Join(", ", unknown)}; usage: Interop [{string.Join("|", commands)}]... (none: all)");
    return 2;
}

var failed = false;
foreach (var command in chosen)
{
    var ok = command switch
    {
        "bfloat16" => BFloat16Interop.CheckAllBitPatterns(),
        "torch" => TorchSharpInterop.Run(),
        _ => OnnxRuntimeInterop.Run(),
    };
    failed |= !ok;
}

return failed ? 1 : 0;
