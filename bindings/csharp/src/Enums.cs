// The C enums of sinkrouter.h. C enums are int, so every one of these has int as its underlying
// type and can sit directly in the mirrored structs. Member names are the C names without the
// SR_ prefix and the kind prefix (ERR_, BACKEND_, DTYPE_, MEMORY_, ROUTING_), in PascalCase: the
// ABI drift test maps them back that way.
namespace SinkRouter
{
    /// <summary>sr_status: what a call reported. Values are pinned by the C header.</summary>
    public enum Status
    {
        Ok = 0,
        InvalidArgument = 1,
        OutOfRange = 2,
        Unsupported = 3,
        OutOfMemory = 4,
        CacheFull = 5,
        UnknownSequence = 6,
        BackendUnavailable = 7,
        Device = 8,
        StructSize = 9,
        Internal = 10,
    }

    /// <summary>sr_backend: where a context runs.</summary>
    public enum Backend
    {
        Auto = 0,
        Cpu = 1,
        Cuda = 2,
        Hip = 3,
    }

    /// <summary>sr_dtype: element type of K/V, queries and outputs.</summary>
    public enum DType
    {
        /// <summary>Transfer options only: the cache's own dtype.</summary>
        Cache = -1,
        F32 = 0,
        F16 = 1,
        Bf16 = 2,
        /// <summary>OCP FP8 E4M3, a cache element type only (KvCacheOptions.DType): never a
        /// buffer type. The library keeps one f32 scale per token and kv-head for K and for V
        /// and converts on Append and Read from and to the f32, F16 or Bf16 buffers you pass.
        /// Since library 0.2.0.</summary>
        Fp8E4m3 = 3,
    }

    /// <summary>sr_memory: where a caller's buffer lives.</summary>
    public enum MemoryKind
    {
        Host = 0,
        Device = 1,
    }

    /// <summary>sr_routing_mode: how a decode step chooses the V blocks it may skip.</summary>
    public enum RoutingMode
    {
        /// <summary>Dense exact attention.</summary>
        Off = 0,
        /// <summary>Skip V blocks whose logits sit more than Tau below the anchor reference.</summary>
        Tau = 1,
        /// <summary>Skip V blocks while the certified relative error stays within ErrorBudget.</summary>
        Budget = 2,
    }
}
