using FlashMla.Cuda;
using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Mla.Cuda;
using FlashMla.Numerics;
using FlashMla.Tensors;
using FlashMla.Testing;

namespace MlaDecodeLoop;

/// <summary>
/// The loop on the CUDA backend. A decode step is one CUDA graph, captured once and replayed every
/// step: the upload of the step's tables from page-locked memory, every layer's cache write, the
/// plan update and every layer's decode. Between replays the host refills the tables and the
/// inputs in place (same addresses); a step's page copies, which vary, run before the replay.
/// Every layer's output is checked against the CPU backend, which mirrors the caches from the
/// same tables.
/// </summary>
internal sealed class CudaDecodeLoop : IDecodeLoopBackend
{
    private readonly Gaussian _rng;
    private readonly int _maxBlocks;
    private readonly int _layers;
    private readonly List<IDisposable> _owned = [];
    private readonly CudaContext _context;
    private readonly CudaStream _stream;
    private readonly CudaMlaDecoder _decoder;
    private readonly CudaKvCacheWriter _writer;
    private readonly CudaDecodePlan _plan;
    private readonly DeviceKvStepTables _prefill;
    private readonly DeviceKvStepTables _tables;
    private readonly MlaDecodeOptions _options = new() { SoftmaxScale = AttentionShape.SoftmaxScale };
    private readonly Layer[] _model;

    // The CPU backend's mirror of every layer's cache, written from the same tables.
    private readonly CpuKvCacheWriter _cpuWriter = new();
    private readonly CpuMlaDecoder _cpuDecoder = new();
    private readonly CpuDecodePlan _cpuPlan;
    private CudaGraphExec? _step;

    public CudaDecodeLoop(LoopOptions options, int numPages, int maxBlocks)
    {
        _rng = new Gaussian(options.Seed);
        _maxBlocks = maxBlocks;
        _layers = options.Layers;
        _cpuPlan = _cpuDecoder.CreatePlan(DecodeLoop.Rows, 1, AttentionShape.QueryHeads, AttentionShape.KvHeads);
        _model = new Layer[options.Layers];
        try
        {
            _context = Own(CudaContext.Create());
            _stream = Own(CudaStream.Create(_context, nonBlocking: true));
            _decoder = Own(new CudaMlaDecoder(_context));
            _writer = Own(new CudaKvCacheWriter(_context));
            _plan = Own(_decoder.CreatePlan(DecodeLoop.Rows, 1, AttentionShape.QueryHeads, AttentionShape.KvHeads));
            _prefill = Own(new DeviceKvStepTables(_context, DecodeLoop.Rows, maxBlocks, DecodeLoop.Prompts.Max()));
            _tables = Own(new DeviceKvStepTables(_context, DecodeLoop.Rows, maxBlocks, tokensPerRequest: 1));
            for (var layer = 0; layer < options.Layers; layer++)
            {
                _model[layer] = new Layer(this, numPages);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string Description => $"backend: CUDA on {_context.Device}, kernel {_decoder.DescribeKernel(Problem()).Path}; each step one replayed CUDA graph, checked against the CPU backend";

    /// <summary>Whether the CUDA backend can run here; otherwise why not.</summary>
    public static bool Probe(out string reason)
    {
        if (!CudaDriver.TryLoad(out var driver, out var loadReason))
        {
            reason = $"no usable CUDA driver: {loadReason}";
            return false;
        }

        if (driver.DeviceCount == 0)
        {
            reason = "the CUDA driver reports no device";
            return false;
        }

        var device = driver.GetDevice(0);
        if (device.ComputeCapability < new CudaComputeCapability(8, 0))
        {
            reason = $"{device} has compute capability {device.ComputeCapability}; the CUDA decoder needs 8.0 or newer";
            return false;
        }

        reason = string.Empty;
        return true;
    }

    public void Prefill(PagedKvCacheAllocator allocator, KvRequestId[] batch)
    {
        _prefill.Fill(allocator, batch);
        _prefill.EnqueueUpload(_stream);
        var rows = _prefill.SlotMapping.Layout.Shape[0];
        var latent = HostTensor<BFloat16>.Create(rows, AttentionShape.HeadDim);
        using var device = DeviceBuffer<BFloat16>.Allocate(_context, latent.Span.Length);
        foreach (var layer in _model)
        {
            RandomInputs.Fill(latent.Span, _rng);
            device.CopyFromAsync(latent.Span, _stream);
            _writer.Append(device.AsTensor(rows, AttentionShape.HeadDim), _prefill.SlotMapping, layer.KCache, _stream);
            _cpuWriter.Append(latent, _prefill.HostSlotMapping, layer.Mirror);
        }

        _writer.Synchronize(_stream);
        _prefill.MarkInUse(_stream);
    }

    public StepReport Step(PagedKvCacheAllocator allocator, KvRequestId[] batch)
    {
        _step ??= Capture();

        // <cuda-step>
        _tables.Fill(allocator, batch);            // waits until the last replay has read the tables
        foreach (var layer in _model)
        {
            _tables.EnqueuePageCopies(layer.KCache, _stream);  // copies on write, before the replay's writes
            layer.NewInputs(_rng, _stream);        // c_KV, k_rope and q of the step, into the same buffers
        }

        _step.Launch(_stream);                     // upload, writes, plan update, decodes
        _tables.MarkInUse(_stream);
        _decoder.Synchronize(_stream, _plan);      // raises MlaInputException for a bad length or block id
        _writer.Synchronize(_stream);              // raises MlaInputException for a slot outside the cache
        // </cuda-step>

        _cpuDecoder.UpdatePlan(_cpuPlan, _tables.HostCacheSeqlens, _maxBlocks, AttentionShape.PageBlockSize);
        CompareResult? worstOut = null, worstLse = null;
        foreach (var layer in _model)
        {
            var (output, lse) = layer.CheckAgainstCpu(_tables);
            worstOut = CpuDecodeLoop.Worse(worstOut, output);
            worstLse = CpuDecodeLoop.Worse(worstLse, lse);
        }

        return new StepReport(_tables.HostCacheSeqlens.Span.ToArray(), _tables.PageCopies.Count, worstOut!, worstLse!);
    }

    public void Dispose()
    {
        _step?.Dispose();
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            _owned[i].Dispose();
        }
    }

    private MlaDecodeProblem Problem() =>
        MlaDecodeValidation.ValidateProblem<BFloat16, BFloat16, BFloat16>(
            _model[0].Q, _model[0].KCache, KvCacheFormat.Dense(ElementType.BFloat16), _tables.BlockTable, _tables.CacheSeqlens, _model[0].Output, _model[0].Lse, _options);

    private CudaGraphExec Capture()
    {
        // <cuda-graph>
        using var graph = CudaGraph.Capture(_stream, () =>
        {
            _tables.EnqueueUpload(_stream);
            foreach (var layer in _model)
            {
                _writer.Append(layer.CompressedKv, layer.Rope, _tables.SlotMapping, layer.KCache, _stream);
            }

            _decoder.UpdatePlan(_plan, _tables.CacheSeqlens, _maxBlocks, AttentionShape.PageBlockSize, _stream);
            foreach (var layer in _model)
            {
                _decoder.Decode(layer.Q, layer.KCache, _tables.BlockTable, _tables.CacheSeqlens, _plan, layer.Output, layer.Lse, _stream, _options);
            }
        });
        return graph.Instantiate();
        // </cuda-graph>
    }

    private T Own<T>(T resource)
        where T : IDisposable
    {
        _owned.Add(resource);
        return resource;
    }

    /// <summary>One layer's device buffers (fixed addresses, captured by the graph) and its host mirror.</summary>
    private sealed class Layer
    {
        private const int Rows = DecodeLoop.Rows;
        private readonly CudaDecodeLoop _loop;
        private readonly DeviceBuffer<BFloat16> _compressedKv;
        private readonly DeviceBuffer<BFloat16> _rope;
        private readonly DeviceBuffer<BFloat16> _q;
        private readonly DeviceBuffer<BFloat16> _output;
        private readonly DeviceBuffer<float> _lse;
        private readonly HostTensor<BFloat16> _hostCompressedKv = HostTensor<BFloat16>.Create(Rows, AttentionShape.LatentDim);
        private readonly HostTensor<BFloat16> _hostRope = HostTensor<BFloat16>.Create(Rows, AttentionShape.RopeDim);
        private readonly HostTensor<BFloat16> _hostQ = HostTensor<BFloat16>.Create(Rows, 1, AttentionShape.QueryHeads, AttentionShape.HeadDim);
        private readonly HostTensor<BFloat16> _deviceOutput = HostTensor<BFloat16>.Create(Rows, 1, AttentionShape.QueryHeads, AttentionShape.LatentDim);
        private readonly HostTensor<float> _deviceLse = HostTensor<float>.Create(Rows, AttentionShape.QueryHeads, 1);
        private readonly HostTensor<BFloat16> _cpuOutput = HostTensor<BFloat16>.Create(Rows, 1, AttentionShape.QueryHeads, AttentionShape.LatentDim);
        private readonly HostTensor<float> _cpuLse = HostTensor<float>.Create(Rows, AttentionShape.QueryHeads, 1);

        public Layer(CudaDecodeLoop loop, int numPages)
        {
            _loop = loop;
            var context = loop._context;
            Mirror = HostTensor<BFloat16>.Create(numPages, AttentionShape.PageBlockSize, AttentionShape.KvHeads, AttentionShape.HeadDim);
            Mirror.Span.Fill(BFloat16.NaN);
            var cache = loop.Own(DeviceBuffer<BFloat16>.Allocate(context, Mirror.Span.Length));
            cache.CopyFromAsync(Mirror.Span, loop._stream);
            KCache = cache.AsTensor(numPages, AttentionShape.PageBlockSize, AttentionShape.KvHeads, AttentionShape.HeadDim);
            _compressedKv = loop.Own(DeviceBuffer<BFloat16>.Allocate(context, _hostCompressedKv.Span.Length));
            _rope = loop.Own(DeviceBuffer<BFloat16>.Allocate(context, _hostRope.Span.Length));
            _q = loop.Own(DeviceBuffer<BFloat16>.Allocate(context, _hostQ.Span.Length));
            _output = loop.Own(DeviceBuffer<BFloat16>.Allocate(context, _deviceOutput.Span.Length));
            _lse = loop.Own(DeviceBuffer<float>.Allocate(context, _deviceLse.Span.Length));
            CompressedKv = _compressedKv.AsTensor(Rows, AttentionShape.LatentDim);
            Rope = _rope.AsTensor(Rows, AttentionShape.RopeDim);
            Q = _q.AsTensor(Rows, 1, AttentionShape.QueryHeads, AttentionShape.HeadDim);
            Output = _output.AsTensor(Rows, 1, AttentionShape.QueryHeads, AttentionShape.LatentDim);
            Lse = _lse.AsTensor(Rows, AttentionShape.QueryHeads, 1);
        }

        public DeviceTensor<BFloat16> KCache { get; }

        public HostTensor<BFloat16> Mirror { get; }

        public DeviceTensor<BFloat16> CompressedKv { get; }

        public DeviceTensor<BFloat16> Rope { get; }

        public DeviceTensor<BFloat16> Q { get; }

        public DeviceTensor<BFloat16> Output { get; }

        public DeviceTensor<float> Lse { get; }

        /// <summary>Draws the step's c_KV, k_rope and q and enqueues their copies into the captured buffers; poisons the outputs.</summary>
        public void NewInputs(Gaussian rng, CudaStream stream)
        {
            RandomInputs.Fill(_hostCompressedKv.Span, rng);
            RandomInputs.Fill(_hostRope.Span, rng);
            RandomInputs.Fill(_hostQ.Span, rng);
            _compressedKv.CopyFromAsync(_hostCompressedKv.Span, stream);
            _rope.CopyFromAsync(_hostRope.Span, stream);
            _q.CopyFromAsync(_hostQ.Span, stream);
            _output.MemsetAsync(0xff, stream);
        }

        /// <summary>Runs the step on the CPU mirror from the same tables and compares the GPU's output with it.</summary>
        public (CompareResult Output, CompareResult Lse) CheckAgainstCpu(DeviceKvStepTables tables)
        {
            _output.CopyTo(_deviceOutput.Span, _loop._stream);
            _lse.CopyTo(_deviceLse.Span, _loop._stream);
            HostKvStepTables.CopyPages(tables.PageCopies, AttentionShape.PageBlockSize, Mirror);
            _loop._cpuWriter.Append(_hostCompressedKv, _hostRope, tables.HostSlotMapping, Mirror);
            _loop._cpuDecoder.Decode(_hostQ, Mirror, tables.HostBlockTable, tables.HostCacheSeqlens, _loop._cpuPlan, _cpuOutput, _cpuLse, _loop._options);
            return (
                Compare.Check(TestTensors.ToDoubleArray(_deviceOutput), TestTensors.ToDoubleArray(_cpuOutput), Tolerance.ForOutput(ElementType.BFloat16, roundsProbabilities: true), _cpuOutput.Layout.Shape),
                Compare.Check(TestTensors.ToDoubleArray(_deviceLse), TestTensors.ToDoubleArray(_cpuLse), Tolerance.Lse, _cpuLse.Layout.Shape));
        }
    }
}
