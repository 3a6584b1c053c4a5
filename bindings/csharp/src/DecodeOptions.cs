// How a decode step runs: routing, its parameters and what it reports. A new instance holds the
// C library's defaults (sr_decode_args_default): dense, tau 12, 4 sink and 64 window tokens,
// error budget 1e-3, route from the backend's threshold (-1), scale 1/sqrt(head_dim), no
// statistics, no sliding window (-1), no logit soft cap. Learned sink logits and the lse output
// are buffers, so they are arguments of KvCache.Decode, not options.
using SinkRouter.Native;

namespace SinkRouter
{
    public sealed class DecodeOptions
    {
        /// <summary>Off (default), Tau, or Budget (the mode to run).</summary>
        public RoutingMode Routing { get; set; }
        /// <summary>Logit gap for RoutingMode.Tau (> 0; +inf skips nothing).</summary>
        public float Tau { get; set; }
        /// <summary>Anchor set: the first tokens of each sequence.</summary>
        public int SinkTokens { get; set; }
        /// <summary>Anchor set: the last tokens of each sequence.</summary>
        public int WindowTokens { get; set; }
        /// <summary>Relative output error allowed: required (> 0) for Budget, an optional cap
        /// (0 = none) for Tau.</summary>
        public float ErrorBudget { get; set; }
        /// <summary>Routing applies from this length on: a routed step whose longest sequence is
        /// shorter runs dense (exact, counted in DecodeStats.StepsRunDense). -1 (default) = the
        /// backend's own threshold (CPU 0, CUDA/HIP 65536); 0 = route every step.</summary>
        public long RouteFromTokens { get; set; }
        /// <summary>Softmax scale; 0 = 1/sqrt(head_dim).</summary>
        public float Scale { get; set; }
        /// <summary>Add this step to the context's statistics (Context.Stats()).</summary>
        public bool CollectStats { get; set; }
        /// <summary>Sliding window: each sequence attends to its last WindowLeft + 1 tokens only;
        /// -1 (default) = every token. Since library 0.3.0.</summary>
        public int WindowLeft { get; set; }
        /// <summary>With a sliding window, the first WindowSinkTokens tokens of each sequence are
        /// attended too (StreamingLLM); default 0, refused without a window.</summary>
        public int WindowSinkTokens { get; set; }
        /// <summary>> 0: each logit s becomes cap * tanh(s / cap) (Gemma 2) before the softmax, the
        /// routing and the bound; 0 (default) = none.</summary>
        public float LogitSoftCap { get; set; }

        public DecodeOptions()
        {
            sr_decode_args native = DefaultArgs();
            Routing = native.routing;
            Tau = native.tau;
            SinkTokens = native.sink_tokens;
            WindowTokens = native.window_tokens;
            ErrorBudget = native.error_budget;
            RouteFromTokens = native.route_from_tokens;
            Scale = native.scale;
            CollectStats = native.collect_stats != 0;
            WindowLeft = native.window_left;
            WindowSinkTokens = native.window_sink_tokens;
            LogitSoftCap = native.logit_soft_cap;
        }

        /// <summary>The C defaults with these options applied; buffers and shapes left unset.</summary>
        internal sr_decode_args ToNative()
        {
            sr_decode_args native = DefaultArgs();
            native.routing = Routing;
            native.tau = Tau;
            native.sink_tokens = SinkTokens;
            native.window_tokens = WindowTokens;
            native.error_budget = ErrorBudget;
            native.route_from_tokens = RouteFromTokens;
            native.scale = Scale;
            native.collect_stats = CollectStats ? 1 : 0;
            native.window_left = WindowLeft;
            native.window_sink_tokens = WindowSinkTokens;
            native.logit_soft_cap = LogitSoftCap;
            return native;
        }

        private static sr_decode_args DefaultArgs()
        {
            var native = new sr_decode_args();
            NativeMethods.Check(NativeMethods.sr_decode_args_default(ref native, NativeMethods.SizeOf<sr_decode_args>()));
            return native;
        }
    }
}
