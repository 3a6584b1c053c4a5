// Owning handles for sr_context and sr_kv_cache. The runtime counts the uses of a SafeHandle in
// flight (every P/Invoke taking one adds a reference for the call), so Dispose on one thread
// never frees a handle another thread is using; the destroy function runs once, when the last
// use ends, or from the finalizer if nobody disposed it.
using System;
using System.Runtime.InteropServices;
using SinkRouter.Native;

namespace SinkRouter
{
    internal sealed class ContextHandle : SafeHandle
    {
        internal ContextHandle(IntPtr context) : base(IntPtr.Zero, true)
        {
            SetHandle(context);
        }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle()
        {
            NativeMethods.sr_context_destroy(handle);
            return true;
        }
    }

    /// <summary>A cache must be destroyed before its context (sinkrouter.h), and finalizers run
    /// in no particular order, so the cache handle holds a reference on its context handle,
    /// taken before the cache was created and given back only after the cache is destroyed.
    /// </summary>
    internal sealed class KvCacheHandle : SafeHandle
    {
        private readonly ContextHandle context;

        /// <param name="context">A handle on which the caller took a DangerousAddRef that this
        /// handle now owns.</param>
        internal KvCacheHandle(IntPtr cache, ContextHandle context) : base(IntPtr.Zero, true)
        {
            this.context = context;
            SetHandle(cache);
        }

        public override bool IsInvalid => handle == IntPtr.Zero;

        /// <summary>The context's pointer; valid while this handle is (it holds a reference).</summary>
        internal IntPtr ContextPointer => context.DangerousGetHandle();

        protected override bool ReleaseHandle()
        {
            NativeMethods.sr_kv_cache_destroy(handle);
            context.DangerousRelease();
            return true;
        }
    }
}
