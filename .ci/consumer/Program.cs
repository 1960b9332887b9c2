// A program that uses FlashMla as a package user would: .ci/run builds it against the package from
// a local feed. One CPU decode on random bf16 inputs; exit 0 only when every output and LSE is finite
// and the output is not all zero.
using FlashMla.Mla;
using FlashMla.Mla.Cpu;
using FlashMla.Numerics;
using FlashMla.Tensors;

const int Batch = 2, QueryLength = 1, QueryHeads = 16, KvHeads = 1, HeadDim = 576, HeadDimV = 512;
const int PageBlockSize = 64, BlocksPerSequence = 4;
int[] lengths = [100, 256];

var random = new Random(Environment.TickCount);
var q = HostTensor<BFloat16>.Create(Batch, QueryLength, QueryHeads, HeadDim);
var kCache = HostTensor<BFloat16>.Create(Batch * BlocksPerSequence, PageBlockSize, KvHeads, HeadDim);
foreach (var tensor in new[] { q, kCache })
{
    var span = tensor.Span;
    for (var i = 0; i < span.Length; i++)
    {
        span[i] = (BFloat16)(float)((random.NextDouble() * 2 - 1) / 10);
    }
}

var blockTable = HostTensor<int>.Create(Batch, BlocksPerSequence);
for (var i = 0; i < blockTable.Span.Length; i++)
{
    blockTable.Span[i] = i;
}

var cacheSeqlens = new HostTensor<int>(lengths, TensorLayout.Contiguous(Batch));
var output = HostTensor<BFloat16>.Create(Batch, QueryLength, QueryHeads, HeadDimV);
var lse = HostTensor<float>.Create(Batch, QueryHeads, QueryLength);

new CpuMlaDecoder().Decode(q, kCache, blockTable, cacheSeqlens, output, lse, new MlaDecodeOptions { Causal = true });

var sumAbs = 0.0;
var finite = true;
foreach (var value in output.Span)
{
    var v = (float)value;
    finite &= float.IsFinite(v);
    sumAbs += Math.Abs(v);
}

foreach (var value in lse.Span)
{
    finite &= float.IsFinite(value);
}

Console.WriteLine($"FlashMla CPU decode: b={Batch} h_q={QueryHeads} s_k=[{string.Join(", ", lengths)}] sum|out|={sumAbs:F4} lse[0]={lse.Span[0]:F4} finite={finite}");
return finite && sumAbs > 0 ? 0 : 1;
