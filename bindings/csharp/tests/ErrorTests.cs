// Failures reach C# as SinkRouterException with the C status and the C message (which names the
// bad argument); buffers too short for a call are refused before C sees them; a failed call
// leaves the cache as it was.
using System;
using System.Threading;

namespace SinkRouter.Tests
{
    public static class ErrorTests
    {
        private const int KvHeads = 2, HeadDim = 64, TokenElements = KvHeads * HeadDim;

        [Test]
        public static void BadContextOptionsAreReported()
        {
            Check.FailsWith(Status.OutOfRange, "num_threads",
                            () => new Context(new ContextOptions { Backend = Backend.Cpu, NumThreads = -1 }), "num_threads -1");
            Check.FailsWith(Status.OutOfRange, "device_index",
                            () => new Context(new ContextOptions { Backend = Backend.Cpu, DeviceIndex = -1 }), "device_index -1");
        }

        [Test]
        public static void BadCacheOptionsAreReported()
        {
            using (Context context = TestData.CpuContext())
            {
                Check.FailsWith(Status.Unsupported, "head_dim",
                                () => new KvCache(context, TestData.CacheOptions(1, KvHeads, 100, 64, DType.F32)), "head_dim 100");
                Check.FailsWith(Status.OutOfRange, "num_layers",
                                () => new KvCache(context, TestData.CacheOptions(0, KvHeads, HeadDim, 64, DType.F32)), "num_layers 0");
                KvCacheOptions pages = TestData.CacheOptions(1, KvHeads, HeadDim, 64, DType.F32);
                pages.PageTokens = 24;
                Check.FailsWith(Status.Unsupported, "page_tokens", () => new KvCache(context, pages), "page_tokens 24");
            }
        }

        [Test]
        public static void BadSequenceCallsAreReportedAndChangeNothing()
        {
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(2, KvHeads, HeadDim, 32, DType.F32)))
            {
                long seq = cache.AddSequence();
                float[] token = TestData.Gaussian(TokenElements, 1);
                cache.Append(seq, 0, token, token);

                Check.FailsWith(Status.OutOfRange, "layer", () => cache.Append(seq, 2, token, token), "append to layer 2 of 2");
                Check.FailsWith(Status.UnknownSequence, "sequence 12345", () => cache.Append(12345, 0, token, token),
                                "append to a sequence never added");
                Check.FailsWith(Status.OutOfRange, "new_length", () => cache.TruncateSequence(seq, 5), "truncate past the end");
                Check.FailsWith(Status.InvalidArgument, "k_out",
                                () => cache.Read(seq, 0, 0, 1, Span<float>.Empty, Span<float>.Empty), "read into nothing");
                Check.FailsWith(Status.OutOfRange, "tokens [0, 2)",
                                () => cache.Read(seq, 0, 0, 2, new float[2 * TokenElements], Span<float>.Empty), "read past the end");

                long removed = cache.AddSequence();
                cache.RemoveSequence(removed);
                Check.FailsWith(Status.UnknownSequence, "sequence " + removed, () => cache.SequenceLength(removed, 0),
                                "length of a removed sequence");

                // 32 tokens of capacity = 2 pages, one held by seq: 40 more tokens cannot fit.
                long freeBefore = cache.FreePages;
                float[] tooMany = TestData.Gaussian(40 * TokenElements, 2);
                Check.FailsWith(Status.CacheFull, "free pages", () => cache.Append(seq, 1, tooMany, tooMany), "append past capacity");
                Check.Equal(0L, cache.SequenceLength(seq, 1), "layer 1 length after the failed append");
                Check.Equal(1L, cache.SequenceLength(seq, 0), "layer 0 length after the failed calls");
                Check.Equal(freeBefore, cache.FreePages, "free pages after the failed append");
            }
        }

        [Test]
        public static void BadDecodeArgumentsAreReported()
        {
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(1, KvHeads, HeadDim, 64, DType.F32)))
            {
                long[] seq = { cache.AddSequence() };
                float[] tokens = TestData.Gaussian(10 * TokenElements, 3);
                cache.Append(seq[0], 0, tokens, tokens);
                const int qHeads = 2 * KvHeads;
                float[] q = TestData.Gaussian(qHeads * HeadDim, 4);
                var output = new float[q.Length];

                Check.FailsWith(Status.OutOfRange, "error_budget",
                                () => cache.Decode(0, seq, qHeads, q, output,
                                                   new DecodeOptions { Routing = RoutingMode.Budget, ErrorBudget = 0f }),
                                "budget mode without a budget");
                Check.FailsWith(Status.OutOfRange, "tau",
                                () => cache.Decode(0, seq, qHeads, q, output, new DecodeOptions { Routing = RoutingMode.Tau, Tau = 0f }),
                                "tau 0");
                Check.FailsWith(Status.InvalidArgument, "sink_tokens",
                                () => cache.Decode(0, seq, qHeads, q, output,
                                                   new DecodeOptions { Routing = RoutingMode.Tau, SinkTokens = 0, WindowTokens = 0 }),
                                "routing without anchors");
                var untouched = TestData.Filled(q.Length, float.NaN);
                Check.FailsWith(Status.OutOfRange, "route_from_tokens = -2",
                                () => cache.Decode(0, seq, qHeads, q, untouched,
                                                   new DecodeOptions
                                                   {
                                                       Routing = RoutingMode.Budget, ErrorBudget = 1e-2f, RouteFromTokens = -2,
                                                   }),
                                "route_from_tokens below -1");
                Check.True(Array.TrueForAll(untouched, float.IsNaN), "a refused step wrote its output");
                float[] threeHeads = new float[3 * HeadDim];
                Check.FailsWith(Status.InvalidArgument, "num_q_heads",
                                () => cache.Decode(0, seq, 3, threeHeads, threeHeads, null), "3 q-heads on 2 kv-heads");
                Check.FailsWith(Status.OutOfRange, "layer", () => cache.Decode(1, seq, qHeads, q, output, null), "layer 1 of 1");
                Check.FailsWith(Status.UnknownSequence, "sequence 999",
                                () => cache.Decode(0, new long[] { 999 }, qHeads, q, output, null), "unknown sequence");
                Check.FailsWith(Status.OutOfRange, "batch", () => cache.Decode(0, new long[0], qHeads, q, output, null),
                                "empty batch");
            }
        }

        [Test]
        public static void ShortBuffersAreRefusedBeforeTheCall()
        {
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(1, KvHeads, HeadDim, 64, DType.F32)))
            {
                long seq = cache.AddSequence();
                float[] two = TestData.Gaussian(2 * TokenElements, 5);
                float[] partial = new float[TokenElements + 1];

                Check.Equal("v", Check.Throws<ArgumentException>(() => cache.Append(seq, 0, two, partial), "k/v mismatch").ParamName,
                            "parameter named for mismatched k and v");
                Check.Equal("k", Check.Throws<ArgumentException>(() => cache.Append(seq, 0, partial, partial), "partial token").ParamName,
                            "parameter named for a partial token");
                Check.Equal(0L, cache.SequenceLength(seq, 0), "length after the refused appends");
                Check.Equal("dtype", Check.Throws<ArgumentException>(
                                () => cache.Append(seq, 0, new ushort[TokenElements], new ushort[TokenElements], DType.F32),
                                "16-bit buffer as f32").ParamName, "parameter named for a 16-bit buffer called f32");

                cache.Append(seq, 0, two, two);
                Check.Equal("kOut", Check.Throws<ArgumentException>(
                                () => cache.Read(seq, 0, 0, 2, new float[TokenElements], Span<float>.Empty), "short kOut").ParamName,
                            "parameter named for a short read buffer");

                long[] seqs = { seq };
                float[] q = new float[KvHeads * HeadDim];
                Check.Equal("q", Check.Throws<ArgumentException>(
                                () => cache.Decode(0, seqs, KvHeads, new float[q.Length - 1], new float[q.Length], null),
                                "short q").ParamName, "parameter named for a short q");
                Check.Equal("output", Check.Throws<ArgumentException>(
                                () => cache.Decode(0, seqs, KvHeads, q, new float[q.Length - 1], null), "short output").ParamName,
                            "parameter named for a short output");
                Check.Equal("headErrorBound", Check.Throws<ArgumentException>(
                                () => cache.Decode(0, seqs, KvHeads, q, new float[q.Length], Span<float>.Empty,
                                                   new float[KvHeads - 1], null), "short bound").ParamName,
                            "parameter named for a short per-head buffer");
            }
        }

        [Test]
        public static void EachThreadSeesItsOwnErrorMessage()
        {
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(1, KvHeads, HeadDim, 64, DType.F32)))
            {
                long seq = cache.AddSequence();
                float[] token = TestData.Gaussian(TokenElements, 6);
                string otherThreadFailure = null;
                var other = new Thread(() =>
                {
                    try
                    {
                        for (int i = 0; i < 500; i++)
                            Check.FailsWith(Status.UnknownSequence, "sequence 777", () => cache.SequenceLength(777, 0), "other thread");
                    }
                    catch (Exception e)
                    {
                        otherThreadFailure = e.Message;
                    }
                });
                other.Start();
                for (int i = 0; i < 500; i++)
                    Check.FailsWith(Status.OutOfRange, "layer", () => cache.Append(seq, 7, token, token), "this thread");
                other.Join();
                Check.True(otherThreadFailure == null, "the other thread: " + otherThreadFailure);
            }
        }
    }
}
