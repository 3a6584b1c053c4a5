// P/Invoke declarations of every function of sinkrouter.h, named as in C (the ABI drift test
// checks the set against the header). "sinkrouter" resolves to libsinkrouter.so on Linux under
// .NET; under Mono, SinkRouter.dll.config maps it to the versioned libsinkrouter.so.1.
// Strings the library returns are static or owned by it, so they come back as IntPtr: a string
// return type would make the marshaller free memory it does not own.
using System;
using System.Runtime.InteropServices;

namespace SinkRouter.Native
{
    internal static class NativeMethods
    {
        private const string Library = "sinkrouter";
        private const CallingConvention Cdecl = CallingConvention.Cdecl;

        // ------------------------------------------------------------ status and errors
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern IntPtr sr_status_string(Status status);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern IntPtr sr_last_error();

        // ------------------------------------------------------------ versions
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint sr_version_number();

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern IntPtr sr_version();

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern uint sr_abi_version();

        // ------------------------------------------------------------ basic types
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern IntPtr sr_backend_name(Backend backend);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern UIntPtr sr_dtype_size(DType dtype);

        // ------------------------------------------------------------ context
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_context_options_default(ref sr_context_options options, UIntPtr structSize);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_context_create(ref sr_context_options options, out IntPtr outContext);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern void sr_context_destroy(IntPtr context);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_context_backend(ContextHandle context, out Backend outBackend);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_context_num_threads(ContextHandle context, out int outThreads);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_context_device_name(ContextHandle context, out IntPtr outName);

        // ------------------------------------------------------------ KV cache
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_kv_cache_options_default(ref sr_kv_cache_options options, UIntPtr structSize);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_kv_cache_create(ContextHandle context, ref sr_kv_cache_options options,
                                                         out IntPtr outCache);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern void sr_kv_cache_destroy(IntPtr cache);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_kv_cache_pages(KvCacheHandle cache, out long outTotalPages,
                                                        out long outFreePages);

        // ------------------------------------------------------------ sequences
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_seq_add(KvCacheHandle cache, out long outSeq);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_seq_fork(KvCacheHandle cache, long parent, out long outChild);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_seq_remove(KvCacheHandle cache, long seq);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_seq_length(KvCacheHandle cache, long seq, int layer, out long outLength);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_seq_truncate(KvCacheHandle cache, long seq, long newLength);

        // ------------------------------------------------------------ K/V transfer
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_kv_io_default(ref sr_kv_io io, UIntPtr structSize);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_kv_append(KvCacheHandle cache, long seq, int layer, long nTokens,
                                                   IntPtr k, IntPtr v, ref sr_kv_io io);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_kv_read(KvCacheHandle cache, long seq, int layer, long firstToken,
                                                 long nTokens, IntPtr kOut, IntPtr vOut, ref sr_kv_io io);

        // ------------------------------------------------------------ decode
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_decode_args_default(ref sr_decode_args args, UIntPtr structSize);

        // The context travels as a raw pointer: the cache's handle holds a reference on it (see
        // KvCacheHandle), so it stays valid for as long as the cache handle does.
        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_decode_step(IntPtr context, KvCacheHandle cache, ref sr_decode_args args);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_merge_args_default(ref sr_merge_args args, UIntPtr structSize);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_merge_attention_states(ContextHandle context, ref sr_merge_args args);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_context_stats(ContextHandle context, ref sr_decode_stats outStats,
                                                       UIntPtr structSize);

        [DllImport(Library, CallingConvention = Cdecl)]
        internal static extern Status sr_context_reset_stats(ContextHandle context);

        // ------------------------------------------------------------ helpers

        /// <summary>Throws SinkRouterException for a failed status. Call it directly after the
        /// native call: sr_last_error is per thread and the next call may overwrite it.</summary>
        internal static void Check(Status status)
        {
            if (status != Status.Ok)
                throw new SinkRouterException(status, Marshal.PtrToStringAnsi(sr_last_error()) ?? "");
        }

        internal static string StatusName(Status status)
        {
            return Marshal.PtrToStringAnsi(sr_status_string(status));
        }

        internal static UIntPtr SizeOf<T>() where T : struct
        {
            return new UIntPtr((uint)Marshal.SizeOf(typeof(T)));
        }
    }
}
