// A libsinkrouter context: a backend, its device and thread defaults, and decode statistics.
using System;
using System.Runtime.InteropServices;
using SinkRouter.Native;

namespace SinkRouter
{
    public sealed class Context : IDisposable
    {
        private readonly ContextHandle handle;
        // Our own flag: Mono's SafeHandle stays open after Dispose while references remain
        // (a cache holds one on its context), and would not refuse further use.
        private volatile bool disposed;

        /// <summary>A context with the library's default options (Backend.Auto).</summary>
        public Context() : this(null)
        {
        }

        public Context(ContextOptions options)
        {
            Library.CheckAbi();
            sr_context_options native = (options ?? new ContextOptions()).ToNative();
            IntPtr context;
            NativeMethods.Check(NativeMethods.sr_context_create(ref native, out context));
            handle = new ContextHandle(context);
        }

        /// <summary>The backend the context runs on (never Auto).</summary>
        public Backend Backend
        {
            get
            {
                Backend backend;
                NativeMethods.Check(NativeMethods.sr_context_backend(LiveHandle(), out backend));
                return backend;
            }
        }

        /// <summary>Worker threads of a CPU context; 0 for GPU contexts.</summary>
        public int NumThreads
        {
            get
            {
                int threads;
                NativeMethods.Check(NativeMethods.sr_context_num_threads(LiveHandle(), out threads));
                return threads;
            }
        }

        /// <summary>A description of the device ("cpu: 16 threads, avx512").</summary>
        public string DeviceName
        {
            get
            {
                // The C string lives as long as the context: hold it while copying.
                ContextHandle live = LiveHandle();
                bool added = false;
                try
                {
                    live.DangerousAddRef(ref added);
                    IntPtr name;
                    NativeMethods.Check(NativeMethods.sr_context_device_name(live, out name));
                    return Marshal.PtrToStringAnsi(name);
                }
                finally
                {
                    if (added) live.DangerousRelease();
                }
            }
        }

        /// <summary>Statistics of the steps run with DecodeOptions.CollectStats since the last
        /// reset (GPU: waits for the context's stream).</summary>
        public DecodeStats Stats()
        {
            var native = new sr_decode_stats { struct_size = NativeMethods.SizeOf<sr_decode_stats>() };
            NativeMethods.Check(NativeMethods.sr_context_stats(LiveHandle(), ref native, native.struct_size));
            return new DecodeStats(native);
        }

        public void ResetStats()
        {
            NativeMethods.Check(NativeMethods.sr_context_reset_stats(LiveHandle()));
        }

        public bool IsDisposed => disposed;

        /// <summary>Gives the context up. Caches created on it keep the native context alive
        /// until they are disposed too, so disposing in any order is safe.</summary>
        public void Dispose()
        {
            disposed = true;
            handle.Dispose();
        }

        internal ContextHandle LiveHandle()
        {
            if (disposed) throw new ObjectDisposedException(nameof(Context));
            return handle;
        }
    }
}
