// K/V written with Append come back unchanged from Read (f32 caches) or rounded to nearest even
// (bf16 caches); sequences fork and truncate as the header says.
using System;
using System.Linq;

namespace SinkRouter.Tests
{
    public static class RoundTripTests
    {
        private const int KvHeads = 2, HeadDim = 64, TokenElements = KvHeads * HeadDim;

        [Test]
        public static void F32AppendedInChunksReadsBackExactly()
        {
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(2, KvHeads, HeadDim, 256, DType.F32)))
            {
                long seq = cache.AddSequence();
                // 37 tokens: two chunks, neither a multiple of the 16-token page.
                float[] k = TestData.Gaussian(37 * TokenElements, 1), v = TestData.Gaussian(37 * TokenElements, 2);
                cache.Append(seq, 1, new ReadOnlySpan<float>(k, 0, 20 * TokenElements),
                             new ReadOnlySpan<float>(v, 0, 20 * TokenElements));
                cache.Append(seq, 1, new ReadOnlySpan<float>(k, 20 * TokenElements, 17 * TokenElements),
                             new ReadOnlySpan<float>(v, 20 * TokenElements, 17 * TokenElements));
                Check.Equal(37L, cache.SequenceLength(seq, 1), "length of layer 1");
                Check.Equal(0L, cache.SequenceLength(seq, 0), "length of layer 0 (filled independently)");

                var kOut = TestData.Filled(37 * TokenElements, float.NaN);
                var vOut = TestData.Filled(37 * TokenElements, float.NaN);
                cache.Read(seq, 1, 0, 37, kOut, vOut);
                Check.True(k.SequenceEqual(kOut), "K read back equals K appended");
                Check.True(v.SequenceEqual(vOut), "V read back equals V appended");

                // A middle range, V only.
                var middle = TestData.Filled(5 * TokenElements, float.NaN);
                cache.Read(seq, 1, 14, 5, Span<float>.Empty, middle);
                Check.True(v.Skip(14 * TokenElements).Take(5 * TokenElements).SequenceEqual(middle), "V of tokens 14..18");
            }
        }

        [Test]
        public static void Bf16CacheRoundsF32ToNearestEvenAndKeepsRawBits()
        {
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(1, KvHeads, HeadDim, 64, DType.Bf16)))
            {
                long seq = cache.AddSequence();
                float[] k = TestData.Gaussian(3 * TokenElements, 3), v = TestData.Gaussian(3 * TokenElements, 4);
                cache.Append(seq, 0, k, v);

                var kBits = new ushort[3 * TokenElements];
                var vAsF32 = new float[3 * TokenElements];
                cache.Read(seq, 0, 0, 3, kBits, Span<ushort>.Empty, DType.Bf16);
                cache.Read(seq, 0, 0, 3, Span<float>.Empty, vAsF32);
                Check.True(k.Select(TestData.ToBf16).SequenceEqual(kBits), "K bits are the f32 rounded to nearest even");
                Check.True(v.Select(x => TestData.FromBf16(TestData.ToBf16(x))).SequenceEqual(vAsF32),
                           "V read as f32 is the bf16 value widened");

                // Raw bf16 in, raw bf16 out: untouched.
                cache.Append(seq, 0, kBits, kBits, DType.Bf16);
                var again = new ushort[3 * TokenElements];
                cache.Read(seq, 0, 3, 3, again, Span<ushort>.Empty, DType.Bf16);
                Check.True(kBits.SequenceEqual(again), "bf16 bits appended raw read back unchanged");
            }
        }

        [Test]
        public static void ForkSharesTokensAndTruncateDropsThem()
        {
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(1, KvHeads, HeadDim, 256, DType.F32)))
            {
                long parent = cache.AddSequence();
                float[] first = TestData.Gaussian(20 * TokenElements, 5);
                cache.Append(parent, 0, first, first);
                long child = cache.ForkSequence(parent);
                Check.True(child != parent, "a fork gets a new id");

                float[] more = TestData.Gaussian(3 * TokenElements, 6);
                cache.Append(child, 0, more, more);
                Check.Equal(20L, cache.SequenceLength(parent, 0), "parent length after the child's append");
                Check.Equal(23L, cache.SequenceLength(child, 0), "child length");
                var parentToken19 = new float[TokenElements];
                cache.Read(parent, 0, 19, 1, parentToken19, Span<float>.Empty);
                Check.True(first.Skip(19 * TokenElements).SequenceEqual(parentToken19),
                           "the child's copy-on-write left the parent's page alone");

                cache.TruncateSequence(child, 18);
                Check.Equal(18L, cache.SequenceLength(child, 0), "child length after truncation");
                var childToken17 = new float[TokenElements];
                cache.Read(child, 0, 17, 1, childToken17, Span<float>.Empty);
                Check.True(first.Skip(17 * TokenElements).Take(TokenElements).SequenceEqual(childToken17),
                           "the kept tokens are the parent's");
            }
        }
    }
}
