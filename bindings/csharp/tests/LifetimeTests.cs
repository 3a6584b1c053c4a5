// Handles: Dispose is idempotent, use after Dispose throws ObjectDisposedException, pages and
// memory come back, and a cache outliving its context still works.
using System;
using System.Collections.Generic;
using System.Diagnostics;

namespace SinkRouter.Tests
{
    public static class LifetimeTests
    {
        private const int KvHeads = 2, HeadDim = 64, TokenElements = KvHeads * HeadDim;

        [Test]
        public static void DisposingTwiceIsSafe()
        {
            Context context = TestData.CpuContext();
            var cache = new KvCache(context, TestData.CacheOptions(1, KvHeads, HeadDim, 64, DType.F32));
            cache.Dispose();
            cache.Dispose();
            context.Dispose();
            context.Dispose();
            Check.True(cache.IsDisposed && context.IsDisposed, "both report IsDisposed");
        }

        [Test]
        public static void UseAfterDisposeThrowsObjectDisposedException()
        {
            Context context = TestData.CpuContext();
            var cache = new KvCache(context, TestData.CacheOptions(1, KvHeads, HeadDim, 64, DType.F32));
            long seq = cache.AddSequence();
            float[] token = TestData.Gaussian(TokenElements, 1);
            cache.Dispose();
            Check.Throws<ObjectDisposedException>(() => cache.AddSequence(), "AddSequence");
            Check.Throws<ObjectDisposedException>(() => cache.Append(seq, 0, token, token), "Append");
            Check.Throws<ObjectDisposedException>(() => cache.Read(seq, 0, 0, 1, token, token), "Read");
            Check.Throws<ObjectDisposedException>(() => { long pages = cache.FreePages; }, "FreePages");
            Check.Throws<ObjectDisposedException>(
                () => cache.Decode(0, new[] { seq }, KvHeads, token, new float[TokenElements], null), "Decode");

            context.Dispose();
            Check.Throws<ObjectDisposedException>(() => context.Stats(), "Stats");
            Check.Throws<ObjectDisposedException>(() => context.ResetStats(), "ResetStats");
            Check.Throws<ObjectDisposedException>(() => { Backend backend = context.Backend; }, "Backend");
            Check.Throws<ObjectDisposedException>(() => { string name = context.DeviceName; }, "DeviceName");
            Check.Throws<ObjectDisposedException>(
                () => new KvCache(context, TestData.CacheOptions(1, KvHeads, HeadDim, 64, DType.F32)), "new KvCache");
        }

        [Test]
        public static void SequenceCyclesReturnEveryPage()
        {
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(2, KvHeads, HeadDim, 1024, DType.F32)))
            {
                long total = cache.TotalPages;
                Check.Equal(total, cache.FreePages, "free pages of a new cache");
                float[] tokens = TestData.Gaussian(50 * TokenElements, 2);
                for (int cycle = 0; cycle < 300; cycle++)
                {
                    long parent = cache.AddSequence();
                    cache.Append(parent, 0, tokens, tokens);
                    cache.Append(parent, 1, tokens, tokens);
                    long child = cache.ForkSequence(parent);
                    cache.Append(child, 1, tokens, tokens); // copy-on-write of the shared last page
                    cache.TruncateSequence(parent, 20);
                    Check.True(cache.FreePages < total, "cycle " + cycle + " holds pages");
                    cache.RemoveSequence(parent);
                    cache.RemoveSequence(child);
                    Check.Equal(total, cache.FreePages, "free pages after cycle " + cycle);
                }
            }
        }

        [Test]
        public static void CreateDisposeCyclesGiveTheMemoryBack()
        {
            // Each cycle fills a 32 MiB cache; kept, 64 cycles would hold 2 GiB. The disposed
            // objects stay reachable, so no finalizer can do Dispose's work.
            const int tokens = 4096, kvHeads = 8, headDim = 128;
            float[] chunk = TestData.Gaussian(tokens * kvHeads * headDim, 3);
            var disposed = new List<IDisposable>();
            long before = 0;
            for (int cycle = 0; cycle < 64; cycle++)
            {
                Context context = TestData.CpuContext();
                var cache = new KvCache(context, TestData.CacheOptions(1, kvHeads, headDim, tokens, DType.F32));
                cache.Append(cache.AddSequence(), 0, chunk, chunk);
                cache.Dispose();
                context.Dispose();
                disposed.Add(cache);
                disposed.Add(context);
                if (cycle == 3) before = ResidentBytes(); // after the allocator's first growth
            }
            long growth = ResidentBytes() - before;
            Check.AtMost(256L << 20, growth, "resident memory growth over 60 create/fill/dispose cycles (bytes)");
            GC.KeepAlive(disposed);
        }

        [Test]
        public static void CacheDisposedAfterItsContextStillWorks()
        {
            Context context = TestData.CpuContext();
            var cache = new KvCache(context, TestData.CacheOptions(1, KvHeads, HeadDim, 64, DType.F32));
            context.Dispose();
            Check.True(context.IsDisposed, "the context reports IsDisposed");

            long[] seq = { cache.AddSequence() };
            float[] tokens = TestData.Gaussian(3 * TokenElements, 4);
            cache.Append(seq[0], 0, tokens, tokens);
            float[] q = TestData.Gaussian(KvHeads * HeadDim, 5);
            var output = TestData.Filled(q.Length, float.NaN);
            cache.Decode(0, seq, KvHeads, q, output, null);
            Check.True(Array.TrueForAll(output, x => !float.IsNaN(x)), "decode through a cache whose context was disposed");
            Check.True(cache.Context.IsDisposed, "cache.Context is the disposed context");
            cache.Dispose();
            Check.True(cache.IsDisposed, "the cache reports IsDisposed");
        }

        private static long ResidentBytes()
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            using (Process self = Process.GetCurrentProcess())
            {
                self.Refresh();
                return self.WorkingSet64;
            }
        }
    }
}
