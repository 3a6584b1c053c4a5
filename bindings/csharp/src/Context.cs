// A libsinkrouter context: a backend, its device and thread defaults, decode statistics, and
// the merging of attention states.
using System;
using System.Buffers;
using System.Collections.Generic;
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

        // ------------------------------------------------------------ merging attention states

        /// <summary>The most states one merge takes.</summary>
        public const int MaxMergeStates = 64;

        /// <summary>Merges attention outputs computed over disjoint sets of keys (a shared prefix
        /// and a per-request suffix, or shards of one sequence) into the attention over their
        /// union, row by row: output = sum_i exp(lse_i - lse) output_i with lse = log sum_i
        /// exp(lse_i). <paramref name="output"/> is [rows][headDim], so rows = output.Length /
        /// headDim, and every state must hold that many rows. <paramref name="lse"/> and
        /// <paramref name="bound"/> ([rows] each, empty = not wanted) receive the merged lse and
        /// the merged certified relative error bound (0 where every state is exact). A learned
        /// sink belongs in one state only. 1 to 64 states, f32, host memory: a CPU context.
        /// output may overlap one state's Output.</summary>
        public unsafe void MergeAttentionStates(int headDim, IReadOnlyList<AttentionState> states, Span<float> output,
                                                Span<float> lse, Span<float> bound)
        {
            if (states == null) throw new ArgumentNullException(nameof(states));
            Backend backend = Backend;
            if (backend != Backend.Cpu)
                throw new InvalidOperationException(
                    "merge buffers live in the context's memory: on a " + Library.BackendName(backend) +
                    " context pass device pointers to the IntPtr overload of MergeAttentionStates");
            if (headDim < 1) throw new ArgumentException($"headDim {headDim} must be >= 1 (head_dim)", nameof(headDim));
            if (output.Length == 0 || output.Length % headDim != 0)
                throw new ArgumentException(
                    $"output holds {output.Length} elements: not a positive whole number of rows of head_dim {headDim}",
                    nameof(output));
            int rows = output.Length / headDim;
            RequireRows(lse.Length, rows, nameof(lse));
            RequireRows(bound.Length, rows, nameof(bound));
            for (int i = 0; i < states.Count; i++)
            {
                AttentionState state = states[i];
                if (state.Output.Length != (long)rows * headDim)
                    throw new ArgumentException(
                        $"states[{i}].Output holds {state.Output.Length} elements, but {rows} rows of head_dim " +
                        $"{headDim} need {(long)rows * headDim}", nameof(states));
                if (state.Lse.Length != rows)
                    throw new ArgumentException($"states[{i}].Lse holds {state.Lse.Length} elements, but there are {rows} rows",
                                                nameof(states));
                if (state.Bound.Length != 0 && state.Bound.Length != rows)
                    throw new ArgumentException(
                        $"states[{i}].Bound holds {state.Bound.Length} elements, but there are {rows} rows", nameof(states));
            }

            fixed (float* outp = &MemoryMarshal.GetReference(output))
            fixed (float* lsep = &MemoryMarshal.GetReference(lse))
            fixed (float* boundp = &MemoryMarshal.GetReference(bound))
            {
                IntPtr outPtr = (IntPtr)outp;
                IntPtr lsePtr = lse.Length == 0 ? IntPtr.Zero : (IntPtr)lsep;
                IntPtr boundPtr = bound.Length == 0 ? IntPtr.Zero : (IntPtr)boundp;
                int n = states.Count;
                if (n < 1 || n > MaxMergeStates) // the library refuses the count and names num_states
                {
                    MergeCore(headDim, rows, n, IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, outPtr, lsePtr, boundPtr, IntPtr.Zero);
                    return;
                }
                // Every state's memory stays pinned for the call; the arrays of pointers to it are
                // pinned by fixed.
                var pins = new MemoryHandle[3 * n];
                var outs = new IntPtr[n];
                var lses = new IntPtr[n];
                var bounds = new IntPtr[n];
                bool anyBound = false;
                try
                {
                    for (int i = 0; i < n; i++)
                    {
                        AttentionState state = states[i];
                        pins[3 * i] = state.Output.Pin();
                        outs[i] = (IntPtr)pins[3 * i].Pointer;
                        pins[3 * i + 1] = state.Lse.Pin();
                        lses[i] = (IntPtr)pins[3 * i + 1].Pointer;
                        if (state.Bound.Length != 0)
                        {
                            pins[3 * i + 2] = state.Bound.Pin();
                            bounds[i] = (IntPtr)pins[3 * i + 2].Pointer;
                            anyBound = true;
                        }
                    }
                    fixed (IntPtr* po = outs)
                    fixed (IntPtr* pl = lses)
                    fixed (IntPtr* pb = bounds)
                    {
                        MergeCore(headDim, rows, n, (IntPtr)po, (IntPtr)pl, anyBound ? (IntPtr)pb : IntPtr.Zero, outPtr,
                                  lsePtr, boundPtr, IntPtr.Zero);
                    }
                }
                finally
                {
                    for (int i = 0; i < pins.Length; i++) pins[i].Dispose();
                }
            }
        }

        /// <summary>The merge with buffers given as pointers into the context's memory (device
        /// memory of a GPU context, host memory of a CPU one), f32, shaped as in the span
        /// overload. The pointer arrays themselves are host arrays of one entry per state;
        /// stateBounds may be null (every state exact) or hold IntPtr.Zero for an exact state;
        /// lse and bound may be IntPtr.Zero. stream IntPtr.Zero = the context's stream. The caller
        /// vouches for the sizes: they cannot be checked here. (GPU backends refuse merging for
        /// now.)</summary>
        public unsafe void MergeAttentionStates(int headDim, long rows, IntPtr[] stateOutputs, IntPtr[] stateLses,
                                                IntPtr[] stateBounds, IntPtr output, IntPtr lse, IntPtr bound, IntPtr stream)
        {
            if (stateOutputs == null) throw new ArgumentNullException(nameof(stateOutputs));
            if (stateLses == null) throw new ArgumentNullException(nameof(stateLses));
            if (stateLses.Length != stateOutputs.Length)
                throw new ArgumentException(
                    $"stateLses has {stateLses.Length} entries but stateOutputs has {stateOutputs.Length}", nameof(stateLses));
            if (stateBounds != null && stateBounds.Length != stateOutputs.Length)
                throw new ArgumentException(
                    $"stateBounds has {stateBounds.Length} entries but stateOutputs has {stateOutputs.Length}",
                    nameof(stateBounds));
            fixed (IntPtr* po = stateOutputs)
            fixed (IntPtr* pl = stateLses)
            fixed (IntPtr* pb = stateBounds)
            {
                MergeCore(headDim, rows, stateOutputs.Length, stateOutputs.Length == 0 ? IntPtr.Zero : (IntPtr)po,
                          stateLses.Length == 0 ? IntPtr.Zero : (IntPtr)pl,
                          stateBounds == null || stateBounds.Length == 0 ? IntPtr.Zero : (IntPtr)pb, output, lse, bound,
                          stream);
            }
        }

        private void MergeCore(int headDim, long rows, int numStates, IntPtr stateOutputs, IntPtr stateLses,
                               IntPtr stateBounds, IntPtr output, IntPtr lse, IntPtr bound, IntPtr stream)
        {
            ContextHandle live = LiveHandle();
            var args = new sr_merge_args();
            NativeMethods.Check(NativeMethods.sr_merge_args_default(ref args, NativeMethods.SizeOf<sr_merge_args>()));
            args.num_states = numStates;
            args.rows = rows;
            args.head_dim = headDim;
            args.state_outs = stateOutputs;
            args.state_dtype = DType.F32;
            args.state_lses = stateLses;
            args.state_bounds = stateBounds;
            args.@out = output;
            args.out_dtype = DType.F32;
            args.lse = lse;
            args.bound = bound;
            args.stream = stream;
            NativeMethods.Check(NativeMethods.sr_merge_attention_states(live, ref args));
        }

        private static void RequireRows(int length, int rows, string name)
        {
            if (length != 0 && length != rows)
                throw new ArgumentException($"{name} holds {length} elements, but there are {rows} rows", name);
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
