// Decode through the binding: dense against float64, routed against dense and its certified
// bound, statistics, and the pointer overload.
using System;
using System.Linq;
using System.Runtime.InteropServices;
using SinkRouter.Workload;

namespace SinkRouter.Tests
{
    public static class DecodeTests
    {
        [Test]
        public static void DenseMatchesFloat64ReferenceForABatchOfMixedLengths()
        {
            const int kvHeads = 2, group = 4, headDim = 64, qHeads = kvHeads * group;
            int[] lengths = { 100, 37, 1 };
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(1, kvHeads, headDim, 512, DType.F32)))
            {
                long[] seqs = new long[lengths.Length];
                float[][] keys = new float[lengths.Length][], values = new float[lengths.Length][];
                for (int b = 0; b < lengths.Length; b++)
                {
                    seqs[b] = cache.AddSequence();
                    keys[b] = TestData.Gaussian(lengths[b] * kvHeads * headDim, 10 + b);
                    values[b] = TestData.Gaussian(lengths[b] * kvHeads * headDim, 20 + b);
                    cache.Append(seqs[b], 0, keys[b], values[b]);
                }
                float[] q = TestData.Gaussian(lengths.Length * qHeads * headDim, 30);
                float[] output = TestData.Filled(q.Length, float.NaN); // unwritten rows stay NaN and fail

                cache.Decode(0, seqs, qHeads, q, output, null);

                for (int b = 0; b < lengths.Length; b++)
                {
                    float[] qOfSequence = q.Skip(b * qHeads * headDim).Take(qHeads * headDim).ToArray();
                    double[] expected = ReferenceAttention.Compute(keys[b], values[b], lengths[b], kvHeads, headDim,
                                                                   qOfSequence, qHeads, 1.0 / Math.Sqrt(headDim));
                    for (int h = 0; h < qHeads; h++)
                    {
                        double error = ReferenceAttention.RelativeError(output, (b * qHeads + h) * headDim, expected,
                                                                        h * headDim, headDim);
                        Check.AtMost(1e-5, error, "relative error of sequence " + b + " q-head " + h);
                    }
                }
            }
        }

        [Test]
        public static void RoutedStepsStayWithinTheirCertifiedBoundAndBudget()
        {
            WithSinkContext(4096, 7, (context, cache, data, seq, dense) =>
            {
                int heads = data.QHeads;

                var tau = new DecodeOptions { Routing = RoutingMode.Tau, Tau = 12f, ErrorBudget = 0f, CollectStats = true };
                var budget = new DecodeOptions { Routing = RoutingMode.Budget, ErrorBudget = 1e-2f, CollectStats = true };
                foreach (DecodeOptions options in new[] { tau, budget })
                {
                    string mode = options.Routing.ToString();
                    // Not a deconstruction: mcs 6.8 silently drops a statement whose lambda holds
                    // one (this whole WithSinkContext call vanished and the test passed unrun).
                    var step = CountedStep(context, cache, seq, data, options);
                    float[] routed = step.Output, skippedMass = step.SkippedMass, bound = step.Bound;

                    Check.True(skippedMass.Max() > 0f, mode + ": some softmax mass was skipped");
                    Check.True(context.Stats().BlocksVSkipped > 0, mode + ": some V blocks were skipped");
                    for (int h = 0; h < heads; h++)
                    {
                        double error = ReferenceAttention.RelativeError(routed, dense, h * data.HeadDim, data.HeadDim);
                        Check.AtMost(bound[h] + 1e-5, error, mode + ": true error of q-head " + h + " against its bound");
                        if (options.Routing == RoutingMode.Budget)
                            Check.AtMost(options.ErrorBudget, bound[h], mode + ": bound of q-head " + h + " against the budget");
                    }
                    Check.AtMost(options.Routing == RoutingMode.Budget ? options.ErrorBudget : double.MaxValue,
                                 context.Stats().MaxErrorBound, mode + ": largest bound in the statistics");
                }
            });
        }

        [Test]
        public static void RouteFromTokensDefaultsToTheBackendsThreshold()
        {
            Check.Equal(-1L, new DecodeOptions().RouteFromTokens, "default RouteFromTokens (the library's)");
        }

        [Test]
        public static void RoutedStepsShorterThanRouteFromTokensRunDense()
        {
            WithSinkContext(4096, 7, (context, cache, data, seq, dense) =>
            {

                // Shorter than the threshold: the very bits of routing off, nothing skipped, bound 0.
                foreach (long routeFromTokens in new[] { data.Length + 1L, data.Length, -1L })
                {
                    string what = "RouteFromTokens " + routeFromTokens;
                    var options = new DecodeOptions
                    {
                        Routing = RoutingMode.Budget, ErrorBudget = 1e-2f, CollectStats = true, RouteFromTokens = routeFromTokens,
                    };
                    // Not a deconstruction: mcs 6.8 silently drops a statement whose lambda holds
                    // one (this whole WithSinkContext call vanished and the test passed unrun).
                    var step = CountedStep(context, cache, seq, data, options);
                    float[] routed = step.Output, skippedMass = step.SkippedMass, bound = step.Bound;
                    DecodeStats stats = context.Stats();
                    Check.Equal(1L, stats.Steps, what + ": steps");
                    if (routeFromTokens > data.Length)
                    {
                        Check.True(routed.Select(Bits).SequenceEqual(dense.Select(Bits)), what + ": output bit-equal to routing off");
                        Check.True(skippedMass.All(m => m == 0f) && bound.All(b => b == 0f),
                                   what + ": per-head skipped mass and bound are 0");
                        Check.Equal(1L, stats.StepsRunDense, what + ": steps run dense");
                        Check.Equal(0L, stats.BlocksVSkipped, what + ": V blocks skipped");
                        Check.Equal(0.0, stats.MaxErrorBound, what + ": largest bound");
                        Check.Equal(0.0, stats.MaxSkippedMass, what + ": largest skipped mass");
                    }
                    else // at the threshold, and -1 (the CPU's threshold is 0): routed
                    {
                        Check.Equal(0L, stats.StepsRunDense, what + ": steps run dense");
                        Check.True(stats.BlocksVSkipped > 0, what + ": some V blocks were skipped: " + stats);
                        for (int h = 0; h < data.QHeads; h++)
                        {
                            double error = ReferenceAttention.RelativeError(routed, dense, h * data.HeadDim, data.HeadDim);
                            Check.AtMost(bound[h] + 1e-5, error, what + ": true error of q-head " + h + " against its bound");
                        }
                    }
                }
            });
        }

        [Test]
        public static void TauOfInfinityIsTheDensePath()
        {
            WithSinkContext(1024, 8, (context, cache, data, seq, dense) =>
            {
                var routed = TestData.Filled(dense.Length, float.NaN);
                var skippedMass = TestData.Filled(data.QHeads, float.NaN);
                cache.Decode(0, seq, data.QHeads, data.Query, routed, skippedMass, Span<float>.Empty,
                             new DecodeOptions { Routing = RoutingMode.Tau, Tau = float.PositiveInfinity, ErrorBudget = 0f });
                Check.True(skippedMass.All(mass => mass == 0f), "tau = +inf skips nothing");
                for (int h = 0; h < data.QHeads; h++)
                    Check.AtMost(1e-6, ReferenceAttention.RelativeError(routed, dense, h * data.HeadDim, data.HeadDim),
                                 "q-head " + h + " against dense");
            });
        }

        [Test]
        public static void StatisticsCountCollectedStepsUntilReset()
        {
            var data = new SinkStructuredContext(512, 2, 4, 128, 9);
            using (Context context = TestData.CpuContext())
            using (KvCache cache = CacheHolding(context, data))
            {
                long[] seqs = { cache.AddSequence(), cache.AddSequence() };
                foreach (long seq in seqs) cache.Append(seq, 0, data.Keys, data.Values);
                float[] q = data.Query.Concat(data.Query).ToArray();
                var output = new float[q.Length];
                var counted = new DecodeOptions { Routing = RoutingMode.Budget, ErrorBudget = 1e-2f, CollectStats = true };

                context.ResetStats();
                for (int step = 0; step < 3; step++) cache.Decode(0, seqs, data.QHeads, q, output, counted);
                cache.Decode(0, seqs, data.QHeads, q, output, null); // not collected
                DecodeStats stats = context.Stats();
                Check.Equal(3L, stats.Steps, "steps counted");
                Check.Equal(3L * seqs.Length * data.QHeads, stats.Heads, "(sequence, q-head) pairs counted");
                long pagesPerHead = (512 + cache.PageTokens - 1) / cache.PageTokens;
                Check.Equal(3L * seqs.Length * data.KvHeads * pagesPerHead, stats.BlocksTotal, "blocks scored");
                Check.True(stats.BlocksVSkipped > 0 && stats.BlocksVSkipped <= stats.BlocksTotal, "skipped blocks: " + stats);

                context.ResetStats();
                stats = context.Stats();
                Check.Equal(0L, stats.Steps, "steps after reset");
                Check.Equal(0L, stats.BlocksTotal, "blocks after reset");
            }
        }

        [Test]
        public static void PointerOverloadGivesWhatTheSpanOverloadGives()
        {
            var data = new SinkStructuredContext(300, 2, 4, 128, 11);
            using (Context context = TestData.CpuContext())
            using (KvCache cache = CacheHolding(context, data))
            {
                long[] seq = { cache.AddSequence() };
                cache.Append(seq[0], 0, data.Keys, data.Values);
                var options = new DecodeOptions { Routing = RoutingMode.Budget, ErrorBudget = 1e-2f };
                var viaSpan = new float[data.QHeads * data.HeadDim];
                var viaPointer = TestData.Filled(viaSpan.Length, float.NaN);
                var boundViaPointer = TestData.Filled(data.QHeads, float.NaN);
                cache.Decode(0, seq, data.QHeads, data.Query, viaSpan, options);

                // A CPU context's memory is host memory: pinned arrays are valid "context memory".
                GCHandle q = GCHandle.Alloc(data.Query, GCHandleType.Pinned);
                GCHandle output = GCHandle.Alloc(viaPointer, GCHandleType.Pinned);
                GCHandle bound = GCHandle.Alloc(boundViaPointer, GCHandleType.Pinned);
                try
                {
                    cache.Decode(0, seq, data.QHeads, q.AddrOfPinnedObject(), output.AddrOfPinnedObject(), IntPtr.Zero,
                                 bound.AddrOfPinnedObject(), IntPtr.Zero, options);
                }
                finally
                {
                    q.Free();
                    output.Free();
                    bound.Free();
                }
                Check.True(viaSpan.SequenceEqual(viaPointer), "outputs of the two overloads");
                Check.True(boundViaPointer.All(b => b >= 0f && b <= 1e-2f), "bounds written through the pointer");
            }
        }

        private static int Bits(float value)
        {
            return BitConverter.ToInt32(BitConverter.GetBytes(value), 0);
        }

        private static KvCache CacheHolding(Context context, SinkStructuredContext data)
        {
            KvCacheOptions options = TestData.CacheOptions(1, data.KvHeads, data.HeadDim, data.Length * 2, DType.F32);
            return new KvCache(context, options);
        }

        // A CPU context and a cache holding one sink-structured sequence, with its dense output.
        private static void WithSinkContext(int length, int seed,
                                            Action<Context, KvCache, SinkStructuredContext, long[], float[]> body)
        {
            var data = new SinkStructuredContext(length, 2, 4, 128, seed);
            using (Context context = TestData.CpuContext())
            using (KvCache cache = CacheHolding(context, data))
            {
                long[] seq = { cache.AddSequence() };
                cache.Append(seq[0], 0, data.Keys, data.Values);
                var dense = new float[data.QHeads * data.HeadDim];
                cache.Decode(0, seq, data.QHeads, data.Query, dense, null);
                body(context, cache, data, seq, dense);
            }
        }

        // One step from freshly reset statistics, its outputs poisoned with NaN first.
        private static (float[] Output, float[] SkippedMass, float[] Bound) CountedStep(
            Context context, KvCache cache, long[] seq, SinkStructuredContext data, DecodeOptions options)
        {
            context.ResetStats();
            var output = TestData.Filled(data.QHeads * data.HeadDim, float.NaN);
            var skippedMass = TestData.Filled(data.QHeads, float.NaN);
            var bound = TestData.Filled(data.QHeads, float.NaN);
            cache.Decode(0, seq, data.QHeads, data.Query, output, skippedMass, bound, options);
            return (output, skippedMass, bound);
        }
    }
}
