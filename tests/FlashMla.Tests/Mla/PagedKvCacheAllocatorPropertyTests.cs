using CsCheck;
using FlashMla.Mla;
using FlashMla.Tensors;

namespace FlashMla.Tests.Mla;

/// <summary>
/// Random sequences of add, append, fork, free and decode steps against a model of the requests'
/// tokens (CsCheck generates and shrinks them; a failure prints the seed that reproduces it).
/// After every operation: each page's reference count equals the number of live requests whose
/// page list holds it, a page is in no list twice, the free pages are exactly the unreferenced
/// ones (no leak, no page handed out twice) and a failed operation changed nothing. After every
/// step: the tables pass the decode's validation, and a simulated cache, written only through the
/// step's page copies and slot mapping, holds every request's tokens at the slots its block-table
/// row points to (so sharing and copy on write never let one request overwrite another's tokens).
/// </summary>
public sealed class PagedKvCacheAllocatorPropertyTests
{
    private static readonly int[] PageSizes = [1, 2, 3, 4, 16];

    private static readonly Gen<Op> OpGen =
        Gen.Select(Gen.Int[0, 9], Gen.Int[0, 1 << 16], Gen.Int[0, 1 << 16], (kind, a, b) => new Op(kind, a, b));

    private static readonly Gen<(int NumPages, int PageSize, int MaxBlocks, Op[] Ops)> Cases =
        Gen.Select(Gen.Int[1, 24], Gen.Int[0, PageSizes.Length - 1], Gen.Int[1, 6], OpGen.Array[1, 80], (pages, size, blocks, ops) => (pages, PageSizes[size], blocks, ops));

    [Fact]
    public void RandomOperations_KeepPagesCountsAndTokensConsistent()
    {
        Cases.Sample(c =>
        {
            var harness = new Harness(c.NumPages, c.PageSize, c.MaxBlocks);
            foreach (var op in c.Ops)
            {
                harness.Apply(op);
            }

            harness.FreeAll();
        }, iter: 400);
    }

    /// <summary>One operation: <see cref="Kind"/> picks it, <see cref="A"/> and <see cref="B"/> its arguments (taken modulo what is valid).</summary>
    public readonly record struct Op(int Kind, int A, int B)
    {
        public override string ToString() => $"{Kind}:{A}:{B}";
    }

    private sealed class Harness(int numPages, int pageSize, int maxBlocks)
    {
        private readonly PagedKvCacheAllocator _allocator = new(numPages, pageSize, maxBlocks);
        private readonly List<KvRequestId> _live = [];
        private readonly Dictionary<KvRequestId, List<int>> _tokens = [];
        private readonly Dictionary<KvRequestId, int> _pending = [];
        private readonly int[] _cache = Enumerable.Repeat(-1, numPages * pageSize).ToArray();
        private readonly List<PageCopy> _copies = [];
        private int _nextToken;

        public void Apply(Op op)
        {
            switch (op.Kind)
            {
                case 0:
                    Add(op.A % ((2 * pageSize) + 2));
                    break;
                case 1 or 2 or 3:
                    if (_live.Count > 0)
                    {
                        Append(_live[op.A % _live.Count], op.B % ((2 * pageSize) + 2));
                    }

                    break;
                case 4 or 5:
                    if (_live.Count > 0)
                    {
                        var source = _live[op.A % _live.Count];
                        Fork(source, op.B % (_tokens[source].Count - _pending[source] + 1));
                    }

                    break;
                case 6:
                    if (_live.Count > 0)
                    {
                        Free(_live[op.A % _live.Count]);
                    }

                    break;
                default:
                    Step(op.A, op.B);
                    break;
            }

            CheckPages();
        }

        public void FreeAll()
        {
            Step(-1, 0);
            foreach (var request in _live.ToArray())
            {
                Free(request);
            }

            Assert.Equal(numPages, _allocator.FreePages);
            Assert.Equal(0, _allocator.RequestCount);
        }

        private void Add(int tokens)
        {
            var before = Snapshot();
            KvRequestId request;
            try
            {
                request = _allocator.AddRequest(tokens);
            }
            catch (Exception ex) when (ex is KvCacheOutOfPagesException or ArgumentOutOfRangeException)
            {
                Assert.True(ex is ArgumentOutOfRangeException || _allocator.PagesFor(tokens) > _allocator.FreePages, ex.Message);
                Assert.Equal(before, Snapshot());
                return;
            }

            _live.Add(request);
            _tokens[request] = [.. Enumerable.Range(0, tokens).Select(_ => _nextToken++)];
            _pending[request] = tokens;
        }

        private void Append(KvRequestId request, int tokens)
        {
            var before = Snapshot();
            try
            {
                _allocator.Append(request, tokens);
            }
            catch (Exception ex) when (ex is KvCacheOutOfPagesException or ArgumentOutOfRangeException)
            {
                Assert.True(ex is ArgumentOutOfRangeException ? _tokens[request].Count + tokens > _allocator.MaxTokensPerRequest : _allocator.PagesToAppend(request, tokens) > _allocator.FreePages, ex.Message);
                Assert.Equal(before, Snapshot());
                return;
            }

            _tokens[request].AddRange(Enumerable.Range(0, tokens).Select(_ => _nextToken++));
            _pending[request] += tokens;
        }

        private void Fork(KvRequestId source, int prefix)
        {
            var request = _allocator.Fork(source, prefix);
            _live.Add(request);
            _tokens[request] = _tokens[source].Take(prefix).ToList();
            _pending[request] = 0;
        }

        private void Free(KvRequestId request)
        {
            _allocator.Free(request);
            _live.Remove(request);
            _tokens.Remove(request);
            _pending.Remove(request);
        }

        /// <summary>Fills a step for a subset of the live requests (mask; −1: all), runs its copies and writes, and checks the cache.</summary>
        private void Step(int mask, int extra)
        {
            KvRequestId[] batch = [.. _live.Where((_, i) => mask < 0 || (mask >> (i % 16) & 1) != 0)];
            var rows = batch.Length + (extra % 3);
            if (rows == 0)
            {
                return;
            }

            var tokensPerRequest = batch.Select(r => _pending[r]).DefaultIfEmpty(0).Max() + (extra / 3 % 2);
            var table = HostTensor<int>.Create(rows, maxBlocks);
            var seqlens = HostTensor<int>.Create(rows);
            var slots = HostTensor<int>.Create((long)rows * tokensPerRequest);
            _allocator.FillStep(batch, tokensPerRequest, table.Span, seqlens.Span, slots.Span, _copies);
            Assert.Empty(_allocator.PendingPageCopies);

            // The decode accepts the tables.
            var shape = MlaDecodeValidation.ValidateLayouts(
                TensorLayout.Contiguous(rows, 1, 16, 576),
                TensorLayout.Contiguous(numPages, pageSize, 1, 576),
                table.Layout,
                seqlens.Layout,
                TensorLayout.Contiguous(rows, 1, 16, 512),
                TensorLayout.Contiguous(rows, 16, 1),
                new MlaDecodeOptions());
            MlaDecodeValidation.ValidateSequences(shape, seqlens, table);

            // Copies first, then the new tokens through the slot mapping.
            foreach (var copy in _copies)
            {
                Assert.InRange(copy.Tokens, 1, pageSize - 1);
                Array.Copy(_cache, copy.SourcePage * pageSize, _cache, copy.DestinationPage * pageSize, copy.Tokens);
            }

            var written = new HashSet<int>();
            for (var i = 0; i < rows; i++)
            {
                var row = table.Span.Slice(i * maxBlocks, maxBlocks);
                var slotRow = slots.Span.Slice(i * tokensPerRequest, tokensPerRequest);
                if (i >= batch.Length)
                {
                    Assert.Equal(0, seqlens.Span[i]);
                    Assert.All(row.ToArray(), id => Assert.Equal(BlockTables.UnusedBlockId, id));
                    Assert.All(slotRow.ToArray(), s => Assert.Equal(-1, s));
                    continue;
                }

                var request = batch[i];
                var tokens = _tokens[request];
                var pending = _pending[request];
                Assert.Equal(tokens.Count, seqlens.Span[i]);
                var pages = _allocator.PagesFor(tokens.Count);
                Assert.Equal(_allocator.GetPages(request).ToArray(), row[..pages].ToArray());
                Assert.All(row[pages..].ToArray(), id => Assert.Equal(BlockTables.UnusedBlockId, id));
                for (var t = 0; t < tokensPerRequest; t++)
                {
                    if (t >= pending)
                    {
                        Assert.Equal(-1, slotRow[t]);
                        continue;
                    }

                    var token = tokens.Count - pending + t;
                    var slot = slotRow[t];
                    Assert.Equal((row[token / pageSize] * pageSize) + (token % pageSize), slot);
                    Assert.True(written.Add(slot), $"slot {slot} is handed out twice in one step");
                    _cache[slot] = tokens[token];
                }

                _pending[request] = 0;
            }

            foreach (var request in _live)
            {
                Assert.Equal(_pending[request], _allocator.GetPendingTokens(request));
                var tokens = _tokens[request];
                var pages = _allocator.GetPages(request);
                for (var t = 0; t < tokens.Count - _pending[request]; t++)
                {
                    var value = _cache[(pages[t / pageSize] * pageSize) + (t % pageSize)];
                    Assert.True(value == tokens[t], $"{request} token {t}: the cache holds {value}, expected {tokens[t]}");
                }
            }
        }

        private void CheckPages()
        {
            var holders = new int[numPages];
            foreach (var request in _live)
            {
                var pages = _allocator.GetPages(request).ToArray();
                Assert.Equal(_tokens[request].Count, _allocator.GetLength(request));
                Assert.Equal(_pending[request], _allocator.GetPendingTokens(request));
                Assert.Equal(_allocator.PagesFor(_tokens[request].Count), pages.Length);
                Assert.Equal(pages.Length, pages.Distinct().Count());
                foreach (var page in pages)
                {
                    holders[page]++;
                }
            }

            for (var page = 0; page < numPages; page++)
            {
                Assert.Equal(holders[page], _allocator.GetReferenceCount(page));
            }

            Assert.Equal(holders.Count(h => h == 0), _allocator.FreePages);
            Assert.Equal(_live.Count, _allocator.RequestCount);
        }

        private string Snapshot() =>
            string.Join(
                "; ",
                [
                    $"free {_allocator.FreePages}",
                    $"refs [{string.Join(",", Enumerable.Range(0, numPages).Select(_allocator.GetReferenceCount))}]",
                    $"copies [{string.Join(",", _allocator.PendingPageCopies)}]",
                    .. _live.Select(r => $"{r}: {_allocator.GetLength(r)}/{_allocator.GetPendingTokens(r)} [{string.Join(",", _allocator.GetPages(r).ToArray())}]"),
                ]);
    }
}
