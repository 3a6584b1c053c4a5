// The attention variants of library 0.3.0 through the binding: learned sink logits, a sliding
// window keeping its first tokens, a logit soft cap and the lse output against a float64
// reference; shards of a sequence merged with Context.MergeAttentionStates against the whole
// sequence; merged bounds; and the errors of the new arguments.
using System;
using System.Linq;
using System.Runtime.InteropServices;
using SinkRouter.Workload;

namespace SinkRouter.Tests
{
    public static class VariantTests
    {
        /// <summary>The variants of one step as the reference takes them.</summary>
        private sealed class Variant
        {
            public float[] SinkLogits;      // [numQHeads], null = none; -inf = none for that head
            public int WindowLeft = -1;     // -1 = every token
            public int WindowSinkTokens;
            public double SoftCap;          // 0 = none
        }

        /// <summary>Float64 attention of one query token over one sequence with the variants:
        /// the attended tokens (the last WindowLeft + 1 and the first WindowSinkTokens), logits
        /// scale * q.k soft-capped, exp(sink) in the denominator with no value. keys and values
        /// are [length][kvHeads][headDim], q [numQHeads][headDim] (from qOffset). Returns the
        /// output [numQHeads][headDim] and each head's lse.</summary>
        private static (double[] Output, double[] Lse) Reference(float[] keys, float[] values, int length, int kvHeads,
                                                                 int headDim, float[] q, int qOffset, int numQHeads,
                                                                 double scale, Variant variant)
        {
            int windowBegin = 0, keptEnd = 0;
            if (variant.WindowLeft >= 0)
            {
                windowBegin = Math.Max(0, length - 1 - variant.WindowLeft);
                keptEnd = Math.Min(variant.WindowSinkTokens, windowBegin);
            }
            int[] attended = Enumerable.Range(0, length).Where(t => t < keptEnd || t >= windowBegin).ToArray();
            int group = numQHeads / kvHeads;
            var output = new double[numQHeads * headDim];
            var lse = new double[numQHeads];
            var logits = new double[attended.Length];
            for (int h = 0; h < numQHeads; h++)
            {
                int kvh = h / group;
                double sink = variant.SinkLogits == null ? double.NegativeInfinity : variant.SinkLogits[h];
                double max = sink;
                for (int i = 0; i < attended.Length; i++)
                {
                    long row = ((long)attended[i] * kvHeads + kvh) * headDim;
                    double dot = 0;
                    for (int d = 0; d < headDim; d++) dot += (double)q[qOffset + h * headDim + d] * keys[row + d];
                    double s = dot * scale;
                    if (variant.SoftCap > 0) s = variant.SoftCap * Math.Tanh(s / variant.SoftCap);
                    logits[i] = s;
                    max = Math.Max(max, s);
                }
                double sum = double.IsNegativeInfinity(sink) ? 0 : Math.Exp(sink - max);
                for (int i = 0; i < attended.Length; i++)
                {
                    double w = Math.Exp(logits[i] - max);
                    sum += w;
                    long row = ((long)attended[i] * kvHeads + kvh) * headDim;
                    for (int d = 0; d < headDim; d++) output[h * headDim + d] += w * values[row + d];
                }
                for (int d = 0; d < headDim; d++) output[h * headDim + d] /= sum;
                lse[h] = max + Math.Log(sum);
            }
            return (output, lse);
        }

        private static void CheckLse(float[] actual, int offset, double[] expected, string what)
        {
            for (int h = 0; h < expected.Length; h++)
                Check.AtMost(1e-5 * Math.Max(1.0, Math.Abs(expected[h])), Math.Abs(actual[offset + h] - expected[h]),
                             what + ": |lse - reference| of row " + h);
        }

        private static void CheckRows(float[] actual, int offset, double[] expected, int headDim, string what)
        {
            for (int r = 0; r * headDim < expected.Length; r++)
                Check.AtMost(1e-5, ReferenceAttention.RelativeError(actual, offset + r * headDim, expected, r * headDim, headDim),
                             what + ": relative error of row " + r);
        }

        private static double[] ToDouble(float[] values, int offset, int count)
        {
            return values.Skip(offset).Take(count).Select(v => (double)v).ToArray();
        }

        [Test]
        public static void VariantDefaultsAreTheLibrarys()
        {
            var options = new DecodeOptions();
            Check.Equal(-1, options.WindowLeft, "default WindowLeft");
            Check.Equal(0, options.WindowSinkTokens, "default WindowSinkTokens");
            Check.Equal(0f, options.LogitSoftCap, "default LogitSoftCap");
        }

        [Test]
        public static void SinksWindowSoftCapAndLseMatchFloat64()
        {
            const int kvHeads = 2, group = 2, headDim = 64, qHeads = kvHeads * group;
            int[] lengths = { 300, 41, 5 }; // longer than, as long as and shorter than the window
            var variant = new Variant
            {
                SinkLogits = new[] { 0.5f, float.NegativeInfinity, 2f, -1f },
                WindowLeft = 40,
                WindowSinkTokens = 4,
                SoftCap = 4,
            };
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(1, kvHeads, headDim, 512, DType.F32)))
            {
                long[] seqs = new long[lengths.Length];
                for (int b = 0; b < lengths.Length; b++)
                {
                    seqs[b] = cache.AddSequence();
                    cache.Append(seqs[b], 0, TestData.Gaussian(lengths[b] * kvHeads * headDim, 50 + b),
                                 TestData.Gaussian(lengths[b] * kvHeads * headDim, 60 + b));
                }
                // Logits of a few units, so that the soft cap bends them.
                float[] q = TestData.Gaussian(lengths.Length * qHeads * headDim, 70).Select(x => 3 * x).ToArray();
                float[] output = TestData.Filled(q.Length, float.NaN);
                float[] lse = TestData.Filled(lengths.Length * qHeads, float.NaN);
                var options = new DecodeOptions
                {
                    WindowLeft = variant.WindowLeft, WindowSinkTokens = variant.WindowSinkTokens,
                    LogitSoftCap = (float)variant.SoftCap,
                };
                cache.Decode(0, seqs, qHeads, q, output, Span<float>.Empty, Span<float>.Empty, variant.SinkLogits, lse, options);

                double scale = 1.0 / Math.Sqrt(headDim);
                for (int b = 0; b < lengths.Length; b++)
                {
                    int n = lengths[b] * kvHeads * headDim;
                    float[] keys = new float[n], values = new float[n];
                    cache.Read(seqs[b], 0, 0, lengths[b], keys, values);
                    var expected = Reference(keys, values, lengths[b], kvHeads, headDim, q, b * qHeads * headDim, qHeads, scale,
                                             variant);
                    string what = "sequence " + b + " (" + lengths[b] + " tokens)";
                    CheckRows(output, b * qHeads * headDim, expected.Output, headDim, what);
                    CheckLse(lse, b * qHeads, expected.Lse, what);
                    if (b != 0) continue;

                    // Each variant changes this sequence's attention: the test would notice one ignored.
                    var without = new (string Name, Variant Variant)[]
                    {
                        ("sinks", new Variant { WindowLeft = 40, WindowSinkTokens = 4, SoftCap = 4 }),
                        ("window", new Variant { SinkLogits = variant.SinkLogits, SoftCap = 4 }),
                        ("kept tokens", new Variant { SinkLogits = variant.SinkLogits, WindowLeft = 40, SoftCap = 4 }),
                        ("soft cap", new Variant { SinkLogits = variant.SinkLogits, WindowLeft = 40, WindowSinkTokens = 4 }),
                    };
                    foreach (var other in without)
                    {
                        var changed = Reference(keys, values, lengths[b], kvHeads, headDim, q, 0, qHeads, scale, other.Variant);
                        double differs = 0;
                        for (int h = 0; h < qHeads; h++)
                        {
                            differs = Math.Max(differs, Math.Abs(changed.Lse[h] - expected.Lse[h]));
                            differs = Math.Max(differs, ReferenceAttention.RelativeError(output, h * headDim, changed.Output,
                                                                                         h * headDim, headDim));
                        }
                        Check.True(differs > 1e-3, "without " + other.Name + " the reference differs by only " + differs +
                                                   ": the test does not exercise it");
                    }
                }
            }
        }

        [Test]
        public static void MergingShardsGivesTheWholeSequence()
        {
            const int kvHeads = 2, group = 2, headDim = 64, qHeads = kvHeads * group, length = 300;
            const int row = kvHeads * headDim, rows = qHeads;
            float[] sinks = { 1f, float.NegativeInfinity, -0.5f, 3f };
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(1, kvHeads, headDim, 4 * length, DType.F32)))
            {
                float[] keys = TestData.Gaussian(length * row, 80), values = TestData.Gaussian(length * row, 81);
                float[] q = TestData.Gaussian(qHeads * headDim, 82);
                long whole = cache.AddSequence();
                cache.Append(whole, 0, keys, values);

                foreach (int[] cuts in new[] { new[] { 0, 137, length }, new[] { 0, 90, 200, length } })
                foreach (bool withSinks in new[] { false, true })
                {
                    string what = (cuts.Length - 1) + " shards, sinks " + withSinks;
                    var options = new DecodeOptions { LogitSoftCap = 6f };
                    float[] wholeOutput = TestData.Filled(rows * headDim, float.NaN);
                    float[] wholeLse = TestData.Filled(rows, float.NaN);
                    cache.Decode(0, new[] { whole }, qHeads, q, wholeOutput, Span<float>.Empty, Span<float>.Empty,
                                 withSinks ? sinks : null, wholeLse, options);

                    int shards = cuts.Length - 1;
                    long[] shardSeqs = new long[shards];
                    for (int i = 0; i < shards; i++)
                    {
                        shardSeqs[i] = cache.AddSequence();
                        int from = cuts[i] * row, count = (cuts[i + 1] - cuts[i]) * row;
                        cache.Append(shardSeqs[i], 0, new ReadOnlySpan<float>(keys, from, count),
                                     new ReadOnlySpan<float>(values, from, count));
                    }
                    // The first shard alone (it alone carries the sinks), the others in one batch
                    // step whose output and lse are sliced into states.
                    float[] firstOutput = TestData.Filled(rows * headDim, float.NaN);
                    float[] firstLse = TestData.Filled(rows, float.NaN), firstBound = TestData.Filled(rows, float.NaN);
                    cache.Decode(0, new[] { shardSeqs[0] }, qHeads, q, firstOutput, Span<float>.Empty, firstBound,
                                 withSinks ? sinks : null, firstLse, options);
                    int rest = shards - 1;
                    float[] restQ = Enumerable.Repeat(q, rest).SelectMany(x => x).ToArray();
                    float[] restOutput = TestData.Filled(rest * rows * headDim, float.NaN);
                    float[] restLse = TestData.Filled(rest * rows, float.NaN);
                    cache.Decode(0, shardSeqs.Skip(1).ToArray(), qHeads, restQ, restOutput, Span<float>.Empty,
                                 Span<float>.Empty, null, restLse, options);
                    var states = new AttentionState[shards];
                    states[0] = new AttentionState(firstOutput, firstLse, firstBound);
                    for (int i = 1; i < shards; i++)
                        states[i] = new AttentionState(new ReadOnlyMemory<float>(restOutput, (i - 1) * rows * headDim, rows * headDim),
                                                       new ReadOnlyMemory<float>(restLse, (i - 1) * rows, rows));

                    float[] merged = TestData.Filled(rows * headDim, float.NaN);
                    float[] mergedLse = TestData.Filled(rows, float.NaN), mergedBound = TestData.Filled(rows, float.NaN);
                    context.MergeAttentionStates(headDim, states, merged, mergedLse, mergedBound);

                    CheckRows(merged, 0, ToDouble(wholeOutput, 0, wholeOutput.Length), headDim, what + ": merged output");
                    CheckLse(mergedLse, 0, ToDouble(wholeLse, 0, rows), what + ": merged lse");
                    Check.True(mergedBound.All(b => b == 0f), what + ": merged bound of exact states is 0");
                    Check.True(ReferenceAttention.RelativeError(firstOutput, wholeOutput, 0, wholeOutput.Length) > 1e-2,
                               what + ": the first shard alone is not the whole answer");

                    // Merging into the first state's own output gives the same bits.
                    context.MergeAttentionStates(headDim, states, firstOutput, Span<float>.Empty, Span<float>.Empty);
                    Check.True(firstOutput.SequenceEqual(merged), what + ": merged in place against merged apart");

                    foreach (long seq in shardSeqs) cache.RemoveSequence(seq);
                }
            }
        }

        [Test]
        public static void MergedBoundCoversARoutedState()
        {
            var data = new SinkStructuredContext(4096, 2, 4, 128, 7);
            int heads = data.QHeads, headDim = data.HeadDim;
            const int extra = 64;
            using (Context context = TestData.CpuContext())
            using (var first = new KvCache(context, TestData.CacheOptions(1, data.KvHeads, headDim, data.Length, DType.F32)))
            using (var second = new KvCache(context, TestData.CacheOptions(1, data.KvHeads, headDim, extra, DType.F32)))
            {
                long[] firstSeq = { first.AddSequence() }, secondSeq = { second.AddSequence() };
                first.Append(firstSeq[0], 0, data.Keys, data.Values);
                second.Append(secondSeq[0], 0, TestData.Gaussian(extra * data.KvHeads * headDim, 90),
                              TestData.Gaussian(extra * data.KvHeads * headDim, 91));

                Func<KvCache, long[], DecodeOptions, AttentionState> Step = (cache, seq, options) =>
                {
                    float[] output = new float[heads * headDim], lse = new float[heads], bound = new float[heads];
                    cache.Decode(0, seq, heads, data.Query, output, Span<float>.Empty, bound, null, lse, options);
                    return new AttentionState(output, lse, bound);
                };
                var routedOptions = new DecodeOptions { Routing = RoutingMode.Budget, ErrorBudget = 1e-2f };
                AttentionState exactFirst = Step(first, firstSeq, null), routedFirst = Step(first, firstSeq, routedOptions);
                AttentionState exactSecond = Step(second, secondSeq, null);
                // The lse is exact even where routing skipped V.
                CheckLse(routedFirst.Lse.ToArray(), 0, exactFirst.Lse.ToArray().Select(x => (double)x).ToArray(),
                         "routed lse against dense");

                float[] exact = new float[heads * headDim], routed = new float[heads * headDim];
                float[] exactBound = TestData.Filled(heads, float.NaN), routedBound = TestData.Filled(heads, float.NaN);
                context.MergeAttentionStates(headDim, new[] { exactFirst, new AttentionState(exactSecond.Output, exactSecond.Lse) },
                                             exact, Span<float>.Empty, exactBound);
                context.MergeAttentionStates(headDim, new[] { routedFirst, exactSecond }, routed, Span<float>.Empty, routedBound);
                for (int h = 0; h < heads; h++)
                {
                    Check.Equal(0f, exactBound[h], "all-exact merged bound of row " + h);
                    Check.True(routedBound[h] >= 0f, "merged bound of row " + h + " is " + routedBound[h]);
                    Check.AtMost(routedBound[h] + 1e-5, ReferenceAttention.RelativeError(routed, exact, h * headDim, headDim),
                                 "merged true error of row " + h + " against its merged bound");
                }
                Check.True(routedBound.Any(b => b > 0f), "some merged row carries the routed state's bound");
            }
        }

        [Test]
        public static void MergePointerOverloadGivesWhatTheSpanOverloadGives()
        {
            const int rows = 6, headDim = 8;
            float[][] outputs = { TestData.Gaussian(rows * headDim, 100), TestData.Gaussian(rows * headDim, 101) };
            float[][] lses = { TestData.Gaussian(rows, 102), TestData.Gaussian(rows, 103) };
            float[] bound0 = TestData.Filled(rows, 1e-3f);
            using (Context context = TestData.CpuContext())
            {
                float[] viaSpan = new float[rows * headDim], lseViaSpan = new float[rows], boundViaSpan = new float[rows];
                context.MergeAttentionStates(headDim,
                                             new[] { new AttentionState(outputs[0], lses[0], bound0), new AttentionState(outputs[1], lses[1]) },
                                             viaSpan, lseViaSpan, boundViaSpan);

                float[] viaPointer = TestData.Filled(rows * headDim, float.NaN);
                float[] lseViaPointer = TestData.Filled(rows, float.NaN), boundViaPointer = TestData.Filled(rows, float.NaN);
                object[] pinned = { outputs[0], outputs[1], lses[0], lses[1], bound0, viaPointer, lseViaPointer, boundViaPointer };
                GCHandle[] pins = pinned.Select(array => GCHandle.Alloc(array, GCHandleType.Pinned)).ToArray();
                try
                {
                    Func<int, IntPtr> At = i => pins[i].AddrOfPinnedObject();
                    context.MergeAttentionStates(headDim, rows, new[] { At(0), At(1) }, new[] { At(2), At(3) },
                                                 new[] { At(4), IntPtr.Zero }, At(5), At(6), At(7), IntPtr.Zero);
                }
                finally
                {
                    foreach (GCHandle pin in pins) pin.Free();
                }
                Check.True(viaSpan.SequenceEqual(viaPointer), "merged outputs of the two overloads");
                Check.True(lseViaSpan.SequenceEqual(lseViaPointer), "merged lse of the two overloads");
                Check.True(boundViaSpan.SequenceEqual(boundViaPointer), "merged bounds of the two overloads");
                Check.True(boundViaSpan.All(b => b > 0f), "a state's bound carries into the merged bound");
                // Reference: the two-state merge by its formula, in float64.
                for (int r = 0; r < rows; r++)
                {
                    double m = Math.Max(lses[0][r], lses[1][r]);
                    double w0 = Math.Exp(lses[0][r] - m), w1 = Math.Exp(lses[1][r] - m);
                    Check.AtMost(1e-5 * Math.Max(1, Math.Abs(m)), Math.Abs(lseViaSpan[r] - (m + Math.Log(w0 + w1))), "lse of row " + r);
                    var expected = new double[headDim];
                    for (int d = 0; d < headDim; d++)
                        expected[d] = (w0 * outputs[0][r * headDim + d] + w1 * outputs[1][r * headDim + d]) / (w0 + w1);
                    Check.AtMost(1e-5, ReferenceAttention.RelativeError(viaSpan, r * headDim, expected, 0, headDim),
                                 "merged output of row " + r);
                }
            }
        }

        [Test]
        public static void BadVariantAndMergeArgumentsAreReported()
        {
            const int kvHeads = 2, headDim = 64, qHeads = 2 * kvHeads;
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(1, kvHeads, headDim, 64, DType.F32)))
            {
                long[] seq = { cache.AddSequence() };
                float[] tokens = TestData.Gaussian(3 * kvHeads * headDim, 110);
                cache.Append(seq[0], 0, tokens, tokens);
                float[] q = TestData.Gaussian(qHeads * headDim, 111);
                var output = new float[q.Length];
                Func<DecodeOptions, float[], float[], Action> Decode = (options, sinkLogits, lse) =>
                    () => cache.Decode(0, seq, qHeads, q, output, Span<float>.Empty, Span<float>.Empty, sinkLogits, lse, options);

                Check.FailsWith(Status.OutOfRange, "window_left = -2", Decode(new DecodeOptions { WindowLeft = -2 }, null, null),
                                "window_left -2");
                Check.FailsWith(Status.OutOfRange, "logit_soft_cap = -1", Decode(new DecodeOptions { LogitSoftCap = -1f }, null, null),
                                "logit_soft_cap -1");
                Check.FailsWith(Status.OutOfRange, "logit_soft_cap", Decode(new DecodeOptions { LogitSoftCap = float.NaN }, null, null),
                                "logit_soft_cap NaN");
                Check.FailsWith(Status.InvalidArgument, "window_sink_tokens = 4", Decode(new DecodeOptions { WindowSinkTokens = 4 }, null, null),
                                "window_sink_tokens without a window");
                Check.FailsWith(Status.InvalidArgument, "sink_logits[1]",
                                Decode(null, new[] { 0f, float.NaN, 0f, 0f }, null), "a NaN sink logit");
                Check.FailsWith(Status.InvalidArgument, "sink_logits[3]",
                                Decode(null, new[] { 0f, 0f, 0f, float.PositiveInfinity }, null), "a +inf sink logit");
                Check.Equal("sinkLogits", Check.Throws<ArgumentException>(Decode(null, new float[qHeads - 1], null), "short sinkLogits")
                                              .ParamName, "parameter named for short sink logits");
                Check.Equal("lse", Check.Throws<ArgumentException>(Decode(null, null, new float[qHeads - 1]), "short lse").ParamName,
                            "parameter named for a short lse");
                // A refused step writes nothing, lse included.
                float[] untouchedLse = TestData.Filled(qHeads, float.NaN);
                Check.FailsWith(Status.OutOfRange, "window_left = -3", Decode(new DecodeOptions { WindowLeft = -3 }, null, untouchedLse),
                                "window_left -3");
                Check.True(Array.TrueForAll(untouchedLse, float.IsNaN), "a refused step wrote its lse");

                var state = new AttentionState(new float[qHeads * headDim], new float[qHeads]);
                var merged = new float[qHeads * headDim];
                Check.FailsWith(Status.OutOfRange, "num_states = 0",
                                () => context.MergeAttentionStates(headDim, new AttentionState[0], merged, Span<float>.Empty,
                                                                   Span<float>.Empty), "merge of no states");
                Check.FailsWith(Status.OutOfRange, "num_states = 65",
                                () => context.MergeAttentionStates(headDim, Enumerable.Repeat(state, 65).ToArray(), merged,
                                                                   Span<float>.Empty, Span<float>.Empty), "merge of 65 states");
                Check.FailsWith(Status.OutOfRange, "num_states = 0",
                                () => context.MergeAttentionStates(headDim, qHeads, new IntPtr[0], new IntPtr[0], null, IntPtr.Zero,
                                                                   IntPtr.Zero, IntPtr.Zero, IntPtr.Zero), "pointer merge of no states");
                Check.Equal("states", Check.Throws<ArgumentException>(
                                () => context.MergeAttentionStates(headDim, new[] { state, new AttentionState(state.Output, new float[1]) },
                                                                   merged, Span<float>.Empty, Span<float>.Empty),
                                "short state lse").ParamName, "parameter named for a short state lse");
                Check.Equal("output", Check.Throws<ArgumentException>(
                                () => context.MergeAttentionStates(headDim, new[] { state }, new float[headDim + 1],
                                                                   Span<float>.Empty, Span<float>.Empty),
                                "output of a partial row").ParamName, "parameter named for a partial output row");
                Check.Equal("bound", Check.Throws<ArgumentException>(
                                () => context.MergeAttentionStates(headDim, new[] { state }, merged, Span<float>.Empty, new float[2]),
                                "short bound").ParamName, "parameter named for a short merged bound");
                Check.Equal("headDim", Check.Throws<ArgumentException>(
                                () => context.MergeAttentionStates(0, new[] { state }, merged, Span<float>.Empty, Span<float>.Empty),
                                "head_dim 0").ParamName, "parameter named for head_dim 0");
                Check.Equal("stateLses", Check.Throws<ArgumentException>(
                                () => context.MergeAttentionStates(headDim, qHeads, new IntPtr[2], new IntPtr[1], null, IntPtr.Zero,
                                                                   IntPtr.Zero, IntPtr.Zero, IntPtr.Zero),
                                "pointer arrays of different lengths").ParamName, "parameter named for mismatched pointer arrays");
            }
            var disposed = TestData.CpuContext();
            disposed.Dispose();
            Check.Throws<ObjectDisposedException>(
                () => disposed.MergeAttentionStates(64, new[] { new AttentionState(new float[64], new float[1]) }, new float[64],
                                                    Span<float>.Empty, Span<float>.Empty), "merge on a disposed context");
        }
    }
}
