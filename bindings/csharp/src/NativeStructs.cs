// Field-for-field mirrors of the option structs of sinkrouter.h. Type and field names are the C
// names so the ABI drift test (tests/AbiLayoutTests.cs) can compare each one with the layout the
// C compiler produced. size_t and pointers are UIntPtr/IntPtr, C enums are the int-backed enums
// of Enums.cs, int32_t/int64_t are int/long.
using System;
using System.Runtime.InteropServices;

namespace SinkRouter.Native
{
    [StructLayout(LayoutKind.Sequential)]
    internal struct sr_context_options
    {
        public UIntPtr struct_size;
        public Backend backend;
        public int device_index;
        public int num_threads;
        public IntPtr stream;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sr_kv_cache_options
    {
        public UIntPtr struct_size;
        public int num_layers;
        public int num_kv_heads;
        public int head_dim;
        public int page_tokens;
        public long capacity_tokens;
        public DType dtype;
        public int max_batch;
        public int max_q_heads;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sr_kv_io
    {
        public UIntPtr struct_size;
        public DType dtype;
        public long token_stride;
        public long head_stride;
        public MemoryKind memory;
        public IntPtr stream;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sr_decode_args
    {
        public UIntPtr struct_size;
        public int layer;
        public int batch;
        public IntPtr seq_ids;
        public int num_q_heads;
        public IntPtr q;
        public DType q_dtype;
        public IntPtr @out;
        public DType out_dtype;
        public float scale;
        public RoutingMode routing;
        public float tau;
        public int sink_tokens;
        public int window_tokens;
        public float error_budget;
        public IntPtr head_skipped_mass;
        public IntPtr head_error_bound;
        public int collect_stats;
        public IntPtr stream;
        public long route_from_tokens;
        public IntPtr sink_logits;
        public IntPtr lse;
        public int window_left;
        public int window_sink_tokens;
        public float logit_soft_cap;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sr_merge_args
    {
        public UIntPtr struct_size;
        public int num_states;
        public long rows;
        public int head_dim;
        public IntPtr state_outs;
        public DType state_dtype;
        public IntPtr state_lses;
        public IntPtr state_bounds;
        public IntPtr @out;
        public DType out_dtype;
        public IntPtr lse;
        public IntPtr bound;
        public IntPtr stream;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct sr_decode_stats
    {
        public UIntPtr struct_size;
        public long steps;
        public long heads;
        public long blocks_total;
        public long blocks_v_skipped;
        public long heads_recomputed;
        public double max_skipped_mass;
        public double max_error_bound;
        public long steps_run_dense;
    }
}
