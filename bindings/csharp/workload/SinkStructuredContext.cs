// A sink-structured context, as trained models show it, for the tests and the demo. Per kv-head
// a unit direction u; every q-head of the group asks sqrt(head_dim) * u (+ small noise), so with
// scale 1/sqrt(head_dim) a key c * u scores logit c:
//  - token 0 (the sink): key 0 * u, logit 0, the largest; value small (0.05 * gaussian);
//  - the last 64 tokens (the recent window): logits around -5;
//  - every other token: logit -15 + 3 * min(N(0,1), 1.5), key noise 0.35/sqrt(head_dim) * gaussian.
// Routing at tau 12 or an error budget of 1e-2 skips V blocks here; Gaussian keys would give
// nothing to skip.
using System;

namespace SinkRouter.Workload
{
    internal sealed class SinkStructuredContext
    {
        public const int WindowTokens = 64;

        public int Length { get; }
        public int KvHeads { get; }
        public int Group { get; }
        public int HeadDim { get; }
        public int QHeads => KvHeads * Group;

        /// <summary>[Length][KvHeads][HeadDim]</summary>
        public float[] Keys { get; }
        /// <summary>[Length][KvHeads][HeadDim]</summary>
        public float[] Values { get; }
        /// <summary>[KvHeads * Group][HeadDim]; use with scale 1/sqrt(HeadDim).</summary>
        public float[] Query { get; }

        public SinkStructuredContext(int length, int kvHeads, int group, int headDim, int seed)
        {
            if (length <= WindowTokens) throw new ArgumentOutOfRangeException(nameof(length), "must exceed the window");
            Length = length;
            KvHeads = kvHeads;
            Group = group;
            HeadDim = headDim;
            var gaussian = new Gaussian(seed);
            double[][] directions = new double[kvHeads][];
            for (int h = 0; h < kvHeads; h++) directions[h] = gaussian.UnitVector(headDim);

            Query = new float[QHeads * headDim];
            for (int qh = 0; qh < QHeads; qh++)
            {
                double[] u = directions[qh / group];
                for (int d = 0; d < headDim; d++)
                    Query[qh * headDim + d] = (float)(Math.Sqrt(headDim) * u[d] + 0.01 * gaussian.Next());
            }

            Keys = new float[(long)length * kvHeads * headDim];
            Values = new float[Keys.Length];
            double keyNoise = 0.35 / Math.Sqrt(headDim);
            for (int t = 0; t < length; t++)
            {
                for (int h = 0; h < kvHeads; h++)
                {
                    long row = ((long)t * kvHeads + h) * headDim;
                    double[] u = directions[h];
                    double logit;
                    double noise, valueScale;
                    if (t == 0)
                    {
                        logit = 0.0; noise = 0.0; valueScale = 0.05;
                    }
                    else if (t >= length - WindowTokens)
                    {
                        logit = -5.0 + 0.5 * gaussian.Next(); noise = keyNoise; valueScale = 1.0;
                    }
                    else
                    {
                        logit = -15.0 + 3.0 * Math.Min(gaussian.Next(), 1.5); noise = keyNoise; valueScale = 1.0;
                    }
                    for (int d = 0; d < headDim; d++)
                    {
                        Keys[row + d] = (float)(logit * u[d] + noise * gaussian.Next());
                        Values[row + d] = (float)(valueScale * gaussian.Next());
                    }
                }
            }
        }

        /// <summary>Gaussian numbers from a seeded System.Random (Box-Muller).</summary>
        private sealed class Gaussian
        {
            private readonly Random random;
            private double spare;
            private bool haveSpare;

            public Gaussian(int seed)
            {
                random = new Random(seed);
            }

            public double Next()
            {
                if (haveSpare)
                {
                    haveSpare = false;
                    return spare;
                }
                double u1 = 1.0 - random.NextDouble(); // (0, 1]: log stays finite
                double u2 = random.NextDouble();
                double radius = Math.Sqrt(-2.0 * Math.Log(u1));
                spare = radius * Math.Sin(2.0 * Math.PI * u2);
                haveSpare = true;
                return radius * Math.Cos(2.0 * Math.PI * u2);
            }

            public double[] UnitVector(int dimension)
            {
                var v = new double[dimension];
                double norm = 0;
                for (int d = 0; d < dimension; d++)
                {
                    v[d] = Next();
                    norm += v[d] * v[d];
                }
                norm = Math.Sqrt(norm);
                for (int d = 0; d < dimension; d++) v[d] /= norm;
                return v;
            }
        }
    }
}
