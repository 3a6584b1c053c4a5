// Float64 decode attention of one sequence: the yardstick for the library's f32 output.
using System;

namespace SinkRouter.Workload
{
    internal static class ReferenceAttention
    {
        /// <summary>Attention of every q-head over a sequence. keys and values are
        /// [length][kvHeads][headDim], q is [numQHeads][headDim]; q-head h reads kv-head
        /// h / (numQHeads / kvHeads). Returns [numQHeads][headDim].</summary>
        public static double[] Compute(float[] keys, float[] values, int length, int kvHeads, int headDim,
                                       float[] q, int numQHeads, double scale)
        {
            int group = numQHeads / kvHeads;
            var output = new double[numQHeads * headDim];
            var logits = new double[length];
            for (int qh = 0; qh < numQHeads; qh++)
            {
                int kvh = qh / group;
                double max = double.NegativeInfinity;
                for (int t = 0; t < length; t++)
                {
                    long row = ((long)t * kvHeads + kvh) * headDim;
                    double dot = 0;
                    for (int d = 0; d < headDim; d++) dot += (double)q[qh * headDim + d] * keys[row + d];
                    logits[t] = dot * scale;
                    max = Math.Max(max, logits[t]);
                }
                double sum = 0;
                for (int t = 0; t < length; t++)
                {
                    logits[t] = Math.Exp(logits[t] - max);
                    sum += logits[t];
                }
                for (int t = 0; t < length; t++)
                {
                    long row = ((long)t * kvHeads + kvh) * headDim;
                    double weight = logits[t] / sum;
                    for (int d = 0; d < headDim; d++) output[qh * headDim + d] += weight * values[row + d];
                }
            }
            return output;
        }

        /// <summary>||actual - expected|| / ||expected|| over count elements from the offsets.</summary>
        public static double RelativeError(float[] actual, int actualOffset, double[] expected, int expectedOffset,
                                           int count)
        {
            double diff = 0, norm = 0;
            for (int i = 0; i < count; i++)
            {
                double e = expected[expectedOffset + i];
                double a = actual[actualOffset + i];
                diff += (a - e) * (a - e);
                norm += e * e;
            }
            return Math.Sqrt(diff) / Math.Sqrt(norm);
        }

        /// <summary>||actual - expected|| / ||expected|| of one head of two f32 outputs.</summary>
        public static double RelativeError(float[] actual, float[] expected, int offset, int count)
        {
            double diff = 0, norm = 0;
            for (int i = offset; i < offset + count; i++)
            {
                double d = (double)actual[i] - expected[i];
                diff += d * d;
                norm += (double)expected[i] * expected[i];
            }
            return Math.Sqrt(diff) / Math.Sqrt(norm);
        }
    }
}
