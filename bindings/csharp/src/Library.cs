// Facts about the loaded libsinkrouter: versions and names.
using System;
using System.Runtime.InteropServices;
using SinkRouter.Native;

namespace SinkRouter
{
    public static class Library
    {
        /// <summary>The SR_ABI_VERSION these declarations mirror (the SONAME's number).</summary>
        public const uint ExpectedAbiVersion = 1;

        /// <summary>"major.minor.patch" of the loaded library.</summary>
        public static string Version => Marshal.PtrToStringAnsi(NativeMethods.sr_version());

        /// <summary>major*10000 + minor*100 + patch of the loaded library.</summary>
        public static uint VersionNumber => NativeMethods.sr_version_number();

        /// <summary>SR_ABI_VERSION of the loaded library.</summary>
        public static uint AbiVersion => NativeMethods.sr_abi_version();

        /// <summary>"SR_ERR_CACHE_FULL" and so on.</summary>
        public static string StatusName(Status status) => NativeMethods.StatusName(status);

        /// <summary>"cpu", "cuda", "hip" or "auto".</summary>
        public static string BackendName(Backend backend) =>
            Marshal.PtrToStringAnsi(NativeMethods.sr_backend_name(backend));

        /// <summary>Bytes of one element; 0 for a value the library does not know.</summary>
        public static int DTypeSize(DType dtype) => (int)NativeMethods.sr_dtype_size(dtype).ToUInt32();

        /// <summary>Throws when the loaded library has another ABI than these declarations: the
        /// struct layouts would not match. Context's constructor calls it.</summary>
        public static void CheckAbi()
        {
            uint loaded = AbiVersion;
            if (loaded != ExpectedAbiVersion)
                throw new InvalidOperationException(
                    "libsinkrouter has ABI version " + loaded + " but this binding was written for ABI version " +
                    ExpectedAbiVersion + ": load libsinkrouter.so." + ExpectedAbiVersion);
        }
    }
}
