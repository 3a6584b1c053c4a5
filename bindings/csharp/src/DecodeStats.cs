// Statistics summed over the decode steps run with CollectStats since the last reset.
using SinkRouter.Native;

namespace SinkRouter
{
    public sealed class DecodeStats
    {
        /// <summary>Decode steps counted.</summary>
        public long Steps { get; }
        /// <summary>(sequence, q-head) pairs computed.</summary>
        public long Heads { get; }
        /// <summary>(sequence, kv-head, page) blocks scored.</summary>
        public long BlocksTotal { get; }
        /// <summary>Of those, blocks whose V was not read.</summary>
        public long BlocksVSkipped { get; }
        /// <summary>Q-heads recomputed exactly because their bound passed the budget.</summary>
        public long HeadsRecomputed { get; }
        /// <summary>Largest skipped softmax mass of any (sequence, q-head).</summary>
        public double MaxSkippedMass { get; }
        /// <summary>Largest certified relative error bound of any (sequence, q-head).</summary>
        public double MaxErrorBound { get; }
        /// <summary>Routed steps run dense because their longest sequence was shorter than
        /// DecodeOptions.RouteFromTokens.</summary>
        public long StepsRunDense { get; }

        /// <summary>BlocksVSkipped / BlocksTotal (0 when nothing was scored).</summary>
        public double VSkipFraction => BlocksTotal == 0 ? 0.0 : (double)BlocksVSkipped / BlocksTotal;

        internal DecodeStats(sr_decode_stats native)
        {
            Steps = native.steps;
            Heads = native.heads;
            BlocksTotal = native.blocks_total;
            BlocksVSkipped = native.blocks_v_skipped;
            HeadsRecomputed = native.heads_recomputed;
            MaxSkippedMass = native.max_skipped_mass;
            MaxErrorBound = native.max_error_bound;
            StepsRunDense = native.steps_run_dense;
        }

        public override string ToString()
        {
            return string.Format(
                "steps {0}, heads {1}, V blocks skipped {2}/{3} ({4:P1}), heads recomputed {5}, " +
                "max skipped mass {6:G3}, max error bound {7:G3}, steps run dense {8}",
                Steps, Heads, BlocksVSkipped, BlocksTotal, VSkipFraction, HeadsRecomputed, MaxSkippedMass,
                MaxErrorBound, StepsRunDense);
        }
    }
}
