// Options of a Context; a new instance holds the C library's defaults (sr_context_options_default).
using System;
using SinkRouter.Native;

namespace SinkRouter
{
    public sealed class ContextOptions
    {
        /// <summary>Default Auto: the first GPU backend that finds a device, else the CPU.</summary>
        public Backend Backend { get; set; }
        /// <summary>GPU ordinal; must be 0 for the CPU.</summary>
        public int DeviceIndex { get; set; }
        /// <summary>CPU worker threads; 0 (default) = all online cores.</summary>
        public int NumThreads { get; set; }
        /// <summary>GPU stream (cudaStream_t / hipStream_t) used when a call passes none;
        /// IntPtr.Zero (default) = the device's default stream.</summary>
        public IntPtr Stream { get; set; }

        public ContextOptions()
        {
            var native = new sr_context_options();
            NativeMethods.Check(NativeMethods.sr_context_options_default(ref native,
                                                                         NativeMethods.SizeOf<sr_context_options>()));
            Backend = native.backend;
            DeviceIndex = native.device_index;
            NumThreads = native.num_threads;
            Stream = native.stream;
        }

        internal sr_context_options ToNative()
        {
            return new sr_context_options
            {
                struct_size = NativeMethods.SizeOf<sr_context_options>(),
                backend = Backend,
                device_index = DeviceIndex,
                num_threads = NumThreads,
                stream = Stream,
            };
        }
    }
}
