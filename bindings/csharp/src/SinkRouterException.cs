// The one exception type for failures the C library reports: its status and its message.
using System;
using SinkRouter.Native;

namespace SinkRouter
{
    /// <summary>A libsinkrouter call failed. Status is the C sr_status; NativeMessage is what
    /// sr_last_error() said (it names the bad argument and its value).</summary>
    [Serializable]
    public sealed class SinkRouterException : Exception
    {
        public Status Status { get; }
        public string NativeMessage { get; }

        public SinkRouterException(Status status, string nativeMessage)
            : base(NativeMethods.StatusName(status) + ": " + nativeMessage)
        {
            Status = status;
            NativeMessage = nativeMessage;
        }
    }
}
