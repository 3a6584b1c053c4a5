// Options of a KvCache; a new instance holds the C library's defaults
// (sr_kv_cache_options_default). NumLayers, NumKvHeads and CapacityTokens have no default.
using SinkRouter.Native;

namespace SinkRouter
{
    public sealed class KvCacheOptions
    {
        /// <summary>At least 1; must be set.</summary>
        public int NumLayers { get; set; }
        /// <summary>At least 1; must be set.</summary>
        public int NumKvHeads { get; set; }
        /// <summary>64, 128 or 256 (default 128).</summary>
        public int HeadDim { get; set; }
        /// <summary>Tokens per page: 16, 32, 64 or 128 (default 16).</summary>
        public int PageTokens { get; set; }
        /// <summary>Pool size: pages = ceil(CapacityTokens / PageTokens); must be set.</summary>
        public long CapacityTokens { get; set; }
        /// <summary>Element type of K and V (default Bf16).</summary>
        public DType DType { get; set; }
        /// <summary>Largest batch of one decode step (default 256).</summary>
        public int MaxBatch { get; set; }
        /// <summary>Largest NumQHeads of a decode step; 0 (default) = 8 * NumKvHeads.</summary>
        public int MaxQHeads { get; set; }

        public KvCacheOptions()
        {
            var native = new sr_kv_cache_options();
            NativeMethods.Check(NativeMethods.sr_kv_cache_options_default(ref native,
                                                                          NativeMethods.SizeOf<sr_kv_cache_options>()));
            NumLayers = native.num_layers;
            NumKvHeads = native.num_kv_heads;
            HeadDim = native.head_dim;
            PageTokens = native.page_tokens;
            CapacityTokens = native.capacity_tokens;
            DType = native.dtype;
            MaxBatch = native.max_batch;
            MaxQHeads = native.max_q_heads;
        }

        internal KvCacheOptions Clone()
        {
            return (KvCacheOptions)MemberwiseClone();
        }

        internal sr_kv_cache_options ToNative()
        {
            return new sr_kv_cache_options
            {
                struct_size = NativeMethods.SizeOf<sr_kv_cache_options>(),
                num_layers = NumLayers,
                num_kv_heads = NumKvHeads,
                head_dim = HeadDim,
                page_tokens = PageTokens,
                capacity_tokens = CapacityTokens,
                dtype = DType,
                max_batch = MaxBatch,
                max_q_heads = MaxQHeads,
            };
        }
    }
}
