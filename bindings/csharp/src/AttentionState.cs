// One input of Context.MergeAttentionStates: attention outputs over one set of keys with the log
// of their softmax denominators (what KvCache.Decode writes to output and lse), and optionally
// their certified relative error bounds (headErrorBound).
using System;

namespace SinkRouter
{
    public readonly struct AttentionState
    {
        /// <summary>A state with an exact output (no bound).</summary>
        public AttentionState(ReadOnlyMemory<float> output, ReadOnlyMemory<float> lse)
            : this(output, lse, ReadOnlyMemory<float>.Empty)
        {
        }

        public AttentionState(ReadOnlyMemory<float> output, ReadOnlyMemory<float> lse, ReadOnlyMemory<float> bound)
        {
            Output = output;
            Lse = lse;
            Bound = bound;
        }

        /// <summary>[rows][head_dim]: a row is one (batch entry, q-head) pair.</summary>
        public ReadOnlyMemory<float> Output { get; }
        /// <summary>[rows]: the natural log of each row's softmax denominator.</summary>
        public ReadOnlyMemory<float> Lse { get; }
        /// <summary>[rows] certified relative error bounds, or empty for an exact state.</summary>
        public ReadOnlyMemory<float> Bound { get; }
    }
}
