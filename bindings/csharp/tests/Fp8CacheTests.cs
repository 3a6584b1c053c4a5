// An FP8 E4M3 cache through the binding: f32 K/V in, f32 back within E4M3's rounding of each
// row's scale, dense decode against float64 over what the cache holds, and FP8 refused as a
// buffer type.
using System;
using System.Linq;
using System.Runtime.InteropServices;
using SinkRouter.Workload;

namespace SinkRouter.Tests
{
    public static class Fp8CacheTests
    {
        private const int KvHeads = 2, Group = 4, HeadDim = 128, QHeads = KvHeads * Group, Tokens = 300;

        /// <summary>E4M3 keeps 3 mantissa bits (2^-4 relative); its subnormal step is 2^-9 of the
        /// row's scale s = amax / 448 (half of it absolute). A row is one token's K (or V) of one
        /// kv-head.</summary>
        private static void CheckWithinFp8Rounding(string name, float[] appended, float[] stored)
        {
            for (int row = 0; row * HeadDim < appended.Length; row++)
            {
                double amax = 0;
                for (int d = 0; d < HeadDim; d++) amax = Math.Max(amax, Math.Abs((double)appended[row * HeadDim + d]));
                double s = amax / 448;
                for (int d = 0; d < HeadDim; d++)
                {
                    double x = appended[row * HeadDim + d], y = stored[row * HeadDim + d];
                    double allowed = (Math.Abs(x) / 16 + s / 1024) * (1 + 1e-6);
                    Check.AtMost(allowed, Math.Abs(y - x), name + " row " + row + " element " + d + ": appended " + x +
                                                           ", read back " + y);
                }
            }
        }

        [Test]
        public static void F32RoundTripIsWithinFp8RoundingAndDenseDecodeMatchesFloat64()
        {
            Check.Equal(1, Library.DTypeSize(DType.Fp8E4m3), "element size of Fp8E4m3");
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(1, KvHeads, HeadDim, 1024, DType.Fp8E4m3)))
            {
                Check.Equal(DType.Fp8E4m3, cache.DType, "cache dtype");
                long seq = cache.AddSequence();
                float[] k = TestData.Gaussian(Tokens * KvHeads * HeadDim, 81);
                float[] v = TestData.Gaussian(Tokens * KvHeads * HeadDim, 82);
                cache.Append(seq, 0, k, v);
                var kStored = new float[k.Length];
                var vStored = new float[v.Length];
                cache.Read(seq, 0, 0, Tokens, kStored, vStored);
                CheckWithinFp8Rounding("K", k, kStored);
                CheckWithinFp8Rounding("V", v, vStored);
                Check.True(!k.SequenceEqual(kStored), "an FP8 cache quantizes: f32 K did not come back exactly");

                // Bf16 reads give the same stored values, rounded once more.
                var kBf16 = new ushort[k.Length];
                cache.Read(seq, 0, 0, Tokens, kBf16, Span<ushort>.Empty, DType.Bf16);
                Check.True(kBf16.SequenceEqual(kStored.Select(TestData.ToBf16)), "Bf16 read of the FP8 cache");

                float[] q = TestData.Gaussian(QHeads * HeadDim, 83);
                float[] output = TestData.Filled(q.Length, float.NaN); // unwritten rows stay NaN and fail
                cache.Decode(0, new[] { seq }, QHeads, q, output, null);
                double[] expected = ReferenceAttention.Compute(kStored, vStored, Tokens, KvHeads, HeadDim, q, QHeads,
                                                               1.0 / Math.Sqrt(HeadDim));
                for (int h = 0; h < QHeads; h++)
                {
                    double error = ReferenceAttention.RelativeError(output, h * HeadDim, expected, h * HeadDim, HeadDim);
                    Check.AtMost(1e-4, error, "relative error of q-head " + h + " against float64 over the stored K/V");
                }
            }
        }

        [Test]
        public static void Fp8IsRefusedAsABufferType()
        {
            using (Context context = TestData.CpuContext())
            using (var cache = new KvCache(context, TestData.CacheOptions(1, 1, 64, 64, DType.Fp8E4m3)))
            {
                long seq = cache.AddSequence();
                float[] row = TestData.Filled(64, 0.5f);
                cache.Append(seq, 0, row, row);

                var qFp8 = new byte[64]; // its bytes do not matter: the dtype is refused first
                float[] output = TestData.Filled(64, float.NaN);
                GCHandle qPin = GCHandle.Alloc(qFp8, GCHandleType.Pinned);
                GCHandle outPin = GCHandle.Alloc(output, GCHandleType.Pinned);
                try
                {
                    IntPtr q = qPin.AddrOfPinnedObject(), o = outPin.AddrOfPinnedObject();
                    Check.FailsWith(Status.Unsupported, "q_dtype",
                                    () => cache.DecodeCore(0, new[] { seq }, 1, q, o, IntPtr.Zero, IntPtr.Zero,
                                                           IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, null, DType.Fp8E4m3),
                                    "decode with q_dtype Fp8E4m3");
                }
                finally
                {
                    qPin.Free();
                    outPin.Free();
                }
                Check.True(output.All(float.IsNaN), "a refused decode wrote its output");

                var bits = new ushort[64];
                Check.Throws<ArgumentException>(() => cache.Append(seq, 0, bits, bits, DType.Fp8E4m3),
                                                "16-bit append named Fp8E4m3");
                Check.Throws<ArgumentException>(() => cache.Read(seq, 0, 0, 1, bits, Span<ushort>.Empty, DType.Fp8E4m3),
                                                "16-bit read named Fp8E4m3");
            }
        }
    }
}
