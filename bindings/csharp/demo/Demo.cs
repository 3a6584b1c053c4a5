// SinkRouter from C#: a context and a KV cache holding a sink-structured context (8K tokens,
// 8 kv-heads, GQA group 4, head_dim 128, bf16), one dense decode step, then routed steps (tau 12,
// and an error budget of 1e-2), each compared with the dense output.
// Run: LD_LIBRARY_PATH=<dir of libsinkrouter.so> mono demo.exe [tokens]
using System;
using System.Linq;
using SinkRouter;
using SinkRouter.Workload;

internal static class Demo
{
    private static int Main(string[] args)
    {
        int tokens = args.Length > 0 ? int.Parse(args[0]) : 8192;
        const int kvHeads = 8, group = 4, headDim = 128, chunkTokens = 1024;
        Console.WriteLine("libsinkrouter " + Library.Version);
        var data = new SinkStructuredContext(tokens, kvHeads, group, headDim, 2024);

        using (var context = new Context(new ContextOptions { Backend = Backend.Cpu }))
        using (var cache = new KvCache(context, new KvCacheOptions
        {
            NumLayers = 1,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            CapacityTokens = tokens,
            DType = DType.Bf16,
        }))
        {
            Console.WriteLine("device: " + context.DeviceName);
            long seq = cache.AddSequence();
            int tokenElements = cache.TokenElements;
            for (int first = 0; first < tokens; first += chunkTokens)
            {
                int count = Math.Min(chunkTokens, tokens - first) * tokenElements;
                cache.Append(seq, 0, new ReadOnlySpan<float>(data.Keys, first * tokenElements, count),
                             new ReadOnlySpan<float>(data.Values, first * tokenElements, count));
            }
            Console.WriteLine("cache: {0} tokens, {1} kv-heads x {2} q-heads, head_dim {3}, {4}; {5} of {6} pages used",
                              cache.SequenceLength(seq, 0), kvHeads, data.QHeads, headDim, cache.DType,
                              cache.TotalPages - cache.FreePages, cache.TotalPages);

            long[] batch = { seq };
            var dense = new float[data.QHeads * headDim];
            cache.Decode(0, batch, data.QHeads, data.Query, dense, null);

            var tau = new DecodeOptions { Routing = RoutingMode.Tau, Tau = 12f, ErrorBudget = 0f, CollectStats = true };
            var budget = new DecodeOptions { Routing = RoutingMode.Budget, ErrorBudget = 1e-2f, CollectStats = true };
            Report("tau 12", context, cache, batch, data, dense, tau);
            Report("budget 1e-2", context, cache, batch, data, dense, budget);
        }
        return 0;
    }

    private static void Report(string name, Context context, KvCache cache, long[] batch, SinkStructuredContext data,
                               float[] dense, DecodeOptions options)
    {
        var routed = new float[dense.Length];
        var skippedMass = new float[data.QHeads];
        var bound = new float[data.QHeads];
        context.ResetStats();
        cache.Decode(0, batch, data.QHeads, data.Query, routed, skippedMass, bound, options);
        DecodeStats stats = context.Stats();

        double largestError = Enumerable.Range(0, data.QHeads)
            .Max(h => ReferenceAttention.RelativeError(routed, dense, h * data.HeadDim, data.HeadDim));
        Console.WriteLine("{0,-12} V blocks skipped {1,6:P1} ({2} of {3}), heads recomputed {4}", name,
                          stats.VSkipFraction, stats.BlocksVSkipped, stats.BlocksTotal, stats.HeadsRecomputed);
        Console.WriteLine("{0,-12} largest skipped mass {1:E2}, largest certified bound {2:E2}, " +
                          "largest measured error vs dense {3:E2}", "", skippedMass.Max(), bound.Max(), largestError);
    }
}
