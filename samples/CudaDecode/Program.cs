// A CUDA decode step as an inference engine runs it: the plan is updated once per step and shared
// by every layer's decode on one stream; then the whole step is captured into a CUDA graph and
// replayed while the requests grow by one token per step. Without a usable GPU it says why and exits.
using FlashMla.Cuda;
using FlashMla.Mla.Cuda;
using FlashMla.Numerics;
using FlashMla.Tensors;

if (!CudaDriver.TryLoad(out var driver, out var reason) || driver.DeviceCount == 0)
{
    Console.WriteLine($"No CUDA device is usable, so there is nothing to run: {(driver is null ? reason : "the driver reports no device.")}");
    Console.WriteLine("samples/CpuQuickstart runs the same decode on the CPU.");
    return 0;
}

var device = driver.GetDevice(0);
if (device.ComputeCapability < new CudaComputeCapability(8, 0))
{
    Console.WriteLine($"No CUDA device is usable: {device} has compute capability {device.ComputeCapability}; the decoder needs 8.0 or newer.");
    return 0;
}

// <cuda-setup>
using var context = CudaContext.Create();                         // device 0, primary context
using var stream = CudaStream.Create(context, nonBlocking: true);  // a stream that graphs can capture
using var decoder = new CudaMlaDecoder(context);                   // loads the kernels (JIT, once per context)
// </cuda-setup>
Console.WriteLine($"device: {context.Device}");

// Four requests of one query token, 128 query heads on one KV head, pages of 64 tokens, two layers.
const int batch = 4, queryLength = 1, queryHeads = 128, kvHeads = 1, layers = 2;
const int headDim = 576, headDimV = 512, pageBlockSize = 64, steps = 3;
int[] lengths = [1000, 4000, 1, 2500];
var maxBlocksPerSequence = (lengths.Max() + steps + pageBlockSize - 1) / pageBlockSize;
var numBlocks = batch * maxBlocksPerSequence;
var random = new Random(2024);

// The step's block table and lengths, shared by the layers; each layer has its own q, cache and outputs.
var pages = Enumerable.Range(0, numBlocks).ToArray();
random.Shuffle(pages);
using var blockTableMemory = DeviceBuffer<int>.FromHost(context, pages);
using var seqlensMemory = DeviceBuffer<int>.FromHost(context, lengths);
var blockTable = blockTableMemory.AsTensor(batch, maxBlocksPerSequence);
var cacheSeqlens = seqlensMemory.AsTensor(batch);
var model = Enumerable.Range(0, layers)
    .Select(_ => new Layer(context, random, batch, queryLength, queryHeads, kvHeads, headDim, headDimV, numBlocks, pageBlockSize))
    .ToArray();

// <cuda-decode-step>
using var plan = decoder.CreatePlan(batch, queryLength, queryHeads, kvHeads);

// Once per decode step, shared by every layer: the split of the batch's work over the SMs is
// computed on the GPU, so there is no host round-trip and the step can live in a CUDA graph.
decoder.UpdatePlan(plan, cacheSeqlens, maxBlocksPerSequence, pageBlockSize, stream);

// Once per layer. DeviceTensor<T> views (pointer + shape + strides) wrap memory owned by anyone:
// DeviceBuffer<T> here, TorchSharp or ONNX Runtime in samples/Interop.
foreach (var layer in model)
{
    decoder.Decode(layer.Q, layer.KCache, blockTable, cacheSeqlens, plan, layer.Output, layer.Lse, stream);
}

decoder.Synchronize(stream, plan);  // waits, and raises MlaInputException for a bad block id or length
// </cuda-decode-step>
var direct = model[0].Checksum();
Console.WriteLine($"direct decode, lengths [{string.Join(", ", lengths)}]: layer 0 sum |out| = {direct:F6}");

// <cuda-graph>
// The same step, captured once. A replay reads what the captured buffers hold when it runs, so
// each step writes its new lengths (in a model, also its queries) and replays the graph.
using var graph = CudaGraph.Capture(stream, () =>
{
    decoder.UpdatePlan(plan, cacheSeqlens, maxBlocksPerSequence, pageBlockSize, stream);
    foreach (var layer in model)
    {
        decoder.Decode(layer.Q, layer.KCache, blockTable, cacheSeqlens, plan, layer.Output, layer.Lse, stream);
    }
});
using var decodeStep = graph.Instantiate();

var replays = new List<double>();
for (var step = 0; step <= steps; step++)
{
    int[] stepLengths = [.. lengths.Select(n => n + step)];  // each request has `step` more tokens
    seqlensMemory.CopyFromAsync(stepLengths, stream);
    decodeStep.Launch(stream);
    decoder.Synchronize(stream, plan);
    replays.Add(model[0].Checksum());
}
// </cuda-graph>

for (var step = 0; step <= steps; step++)
{
    Console.WriteLine($"graph replay {step}, lengths [{string.Join(", ", lengths.Select(n => n + step))}]: layer 0 sum |out| = {replays[step]:F6}");
}

// Replay 0 decodes the same lengths as the direct call, so it must give the same bits.
var replayMatches = replays[0] == direct;
Console.WriteLine(replayMatches ? "graph replay 0 equals the direct decode" : "error: graph replay 0 differs from the direct decode");

foreach (var layer in model)
{
    layer.Dispose();
}

return replayMatches ? 0 : 1;

/// <summary>One layer's device tensors: its queries and KV cache (random values in [-0.1, 0.1)) and its outputs.</summary>
internal sealed class Layer : IDisposable
{
    private readonly DeviceBuffer<BFloat16> _q, _kCache, _output;
    private readonly DeviceBuffer<float> _lse;

    public Layer(CudaContext context, Random random, int batch, int queryLength, int queryHeads, int kvHeads, int headDim, int headDimV, int numBlocks, int pageBlockSize)
    {
        _q = DeviceBuffer<BFloat16>.FromHost(context, RandomValues(random, batch * queryLength * queryHeads * headDim));
        _kCache = DeviceBuffer<BFloat16>.FromHost(context, RandomValues(random, numBlocks * pageBlockSize * kvHeads * headDim));
        _output = DeviceBuffer<BFloat16>.Allocate(context, batch * queryLength * queryHeads * headDimV);
        _lse = DeviceBuffer<float>.Allocate(context, batch * queryHeads * queryLength);
        Q = _q.AsTensor(batch, queryLength, queryHeads, headDim);
        KCache = _kCache.AsTensor(numBlocks, pageBlockSize, kvHeads, headDim);
        Output = _output.AsTensor(batch, queryLength, queryHeads, headDimV);
        Lse = _lse.AsTensor(batch, queryHeads, queryLength);
    }

    public DeviceTensor<BFloat16> Q { get; }

    public DeviceTensor<BFloat16> KCache { get; }

    public DeviceTensor<BFloat16> Output { get; }

    public DeviceTensor<float> Lse { get; }

    /// <summary>Σ |out| over the layer's output, read back to the host.</summary>
    public double Checksum() => _output.ToArray().Sum(x => Math.Abs((double)x));

    public void Dispose()
    {
        _q.Dispose();
        _kCache.Dispose();
        _output.Dispose();
        _lse.Dispose();
    }

    private static BFloat16[] RandomValues(Random random, int count)
    {
        var values = new BFloat16[count];
        foreach (ref var x in values.AsSpan())
        {
            x = (BFloat16)((random.NextSingle() - 0.5f) / 5);
        }

        return values;
    }
}
