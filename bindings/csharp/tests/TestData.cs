// Shared set-up for the tests: a CPU context and caches of small shapes, and seeded data.
using System;

namespace SinkRouter.Tests
{
    internal static class TestData
    {
        public static Context CpuContext()
        {
            return new Context(new ContextOptions { Backend = Backend.Cpu, NumThreads = 2 });
        }

        public static KvCacheOptions CacheOptions(int layers, int kvHeads, int headDim, long capacityTokens, DType dtype)
        {
            return new KvCacheOptions
            {
                NumLayers = layers,
                NumKvHeads = kvHeads,
                HeadDim = headDim,
                CapacityTokens = capacityTokens,
                DType = dtype,
                MaxBatch = 8,
            };
        }

        /// <summary>count Gaussian floats from a seeded generator.</summary>
        public static float[] Gaussian(int count, int seed)
        {
            var random = new Random(seed);
            var values = new float[count];
            for (int i = 0; i < count; i++)
            {
                double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
                values[i] = (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2));
            }
            return values;
        }

        public static float[] Filled(int count, float value)
        {
            var values = new float[count];
            for (int i = 0; i < count; i++) values[i] = value;
            return values;
        }

        /// <summary>f32 -> bf16 bits, rounding to nearest even (the library's rule on append).</summary>
        public static ushort ToBf16(float value)
        {
            uint bits = BitConverter.ToUInt32(BitConverter.GetBytes(value), 0);
            uint roundingBias = 0x7FFF + ((bits >> 16) & 1);
            return (ushort)((bits + roundingBias) >> 16);
        }

        public static float FromBf16(ushort bits)
        {
            return BitConverter.ToSingle(BitConverter.GetBytes((uint)bits << 16), 0);
        }
    }
}
