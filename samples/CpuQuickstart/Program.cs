// The smallest complete decode: a paged bf16 KV cache and queries made up on the spot, one decode
// step on the CPU through the plan lifecycle, and a checksum of the result. Runs anywhere.
using FlashMla.Mla.Cpu;
using FlashMla.Numerics;
using FlashMla.Tensors;

// <cpu-quickstart>
// Two requests of one query token each; 16 query heads share one KV head (MLA: 576-dim keys whose
// first 512 columns are the values), and the cache is paged in blocks of 64 tokens.
const int batch = 2, queryLength = 1, queryHeads = 16, kvHeads = 1;
const int headDim = 576, headDimV = 512, pageBlockSize = 64;
int[] lengths = [300, 1000];
var maxBlocksPerSequence = (lengths.Max() + pageBlockSize - 1) / pageBlockSize;
var numBlocks = batch * maxBlocksPerSequence;

var q = HostTensor<BFloat16>.Create(batch, queryLength, queryHeads, headDim);
var kCache = HostTensor<BFloat16>.Create(numBlocks, pageBlockSize, kvHeads, headDim);
var blockTable = HostTensor<int>.Create(batch, maxBlocksPerSequence);
var cacheSeqlens = new HostTensor<int>(lengths, TensorLayout.Contiguous(batch));
var output = HostTensor<BFloat16>.Create(batch, queryLength, queryHeads, headDimV);
var lse = HostTensor<float>.Create(batch, queryHeads, queryLength);

var random = new Random(2024);
Fill(q.Span, random);
Fill(kCache.Span, random);
var pages = Enumerable.Range(0, numBlocks).ToArray();
random.Shuffle(pages);            // pages in any order: request r's i-th page is blockTable[r, i]
pages.CopyTo(blockTable.Span);

var decoder = new CpuMlaDecoder();
var plan = decoder.CreatePlan(batch, queryLength, queryHeads, kvHeads);
decoder.UpdatePlan(plan, cacheSeqlens, maxBlocksPerSequence, pageBlockSize);  // once per step
decoder.Decode(q, kCache, blockTable, cacheSeqlens, plan, output, lse);       // once per layer
// </cpu-quickstart>

var sumAbs = 0.0;
foreach (var x in output.Span)
{
    sumAbs += Math.Abs((double)x);
}

Console.WriteLine($"decoded {batch} requests of lengths [{string.Join(", ", lengths)}] on the CPU");
Console.WriteLine($"output [{batch}, {queryLength}, {queryHeads}, {headDimV}] bf16: sum |out| = {sumAbs:F6}");
Console.WriteLine($"lse [{batch}, {queryHeads}, {queryLength}] float: sum lse = {lse.Span.ToArray().Sum(x => (double)x):F6}");

// Values in [-0.1, 0.1), the scale of FlashMLA's test inputs.
static void Fill(Span<BFloat16> values, Random random)
{
    foreach (ref var x in values)
    {
        x = (BFloat16)((random.NextSingle() - 0.5f) / 5);
    }
}
