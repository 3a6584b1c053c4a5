// A paged KV cache on a context: sequences, K/V transfer and decode steps.
// Buffers are spans (arrays convert implicitly). Their lengths are checked here, before the C
// call, because C cannot know how long a buffer is; everything else is checked by the library,
// whose status and message come back as a SinkRouterException.
using System;
using System.Runtime.InteropServices;
using SinkRouter.Native;

namespace SinkRouter
{
    public sealed class KvCache : IDisposable
    {
        private readonly KvCacheHandle handle;
        // Our own flag: Mono's SafeHandle stays open after Dispose while references remain
        // (a cache holds one on its context), and would not refuse further use.
        private volatile bool disposed;
        private readonly KvCacheOptions options;
        private readonly Backend backend;

        public KvCache(Context context, KvCacheOptions options)
        {
            if (context == null) throw new ArgumentNullException(nameof(context));
            if (options == null) throw new ArgumentNullException(nameof(options));
            this.options = options.Clone();
            Context = context;
            backend = context.Backend;

            ContextHandle contextHandle = context.LiveHandle();
            sr_kv_cache_options native = this.options.ToNative();
            bool referenced = false;
            try
            {
                // This reference passes to the cache handle, which gives it back after the
                // cache is destroyed: the native context outlives every cache made on it.
                contextHandle.DangerousAddRef(ref referenced);
                IntPtr cache;
                NativeMethods.Check(NativeMethods.sr_kv_cache_create(contextHandle, ref native, out cache));
                handle = new KvCacheHandle(cache, contextHandle);
                referenced = false;
            }
            finally
            {
                if (referenced) contextHandle.DangerousRelease();
            }
        }

        /// <summary>The context the cache was created on.</summary>
        public Context Context { get; }

        public int NumLayers => options.NumLayers;
        public int NumKvHeads => options.NumKvHeads;
        public int HeadDim => options.HeadDim;
        public int PageTokens => options.PageTokens;
        public DType DType => options.DType;
        public int MaxBatch => options.MaxBatch;

        /// <summary>Elements of one token of one layer: NumKvHeads * HeadDim.</summary>
        public int TokenElements => options.NumKvHeads * options.HeadDim;

        /// <summary>Pages in the pool.</summary>
        public long TotalPages
        {
            get
            {
                long total, free;
                NativeMethods.Check(NativeMethods.sr_kv_cache_pages(LiveHandle(), out total, out free));
                return total;
            }
        }

        /// <summary>Pages no sequence holds.</summary>
        public long FreePages
        {
            get
            {
                long total, free;
                NativeMethods.Check(NativeMethods.sr_kv_cache_pages(LiveHandle(), out total, out free));
                return free;
            }
        }

        // ------------------------------------------------------------ sequences

        /// <summary>Adds an empty sequence; ids are never reused within a cache.</summary>
        public long AddSequence()
        {
            long seq;
            NativeMethods.Check(NativeMethods.sr_seq_add(LiveHandle(), out seq));
            return seq;
        }

        /// <summary>A new sequence with the parent's tokens (pages shared, copied on write).</summary>
        public long ForkSequence(long parent)
        {
            long child;
            NativeMethods.Check(NativeMethods.sr_seq_fork(LiveHandle(), parent, out child));
            return child;
        }

        /// <summary>Removes a sequence; pages no other sequence holds return to the pool.</summary>
        public void RemoveSequence(long seq)
        {
            NativeMethods.Check(NativeMethods.sr_seq_remove(LiveHandle(), seq));
        }

        /// <summary>Tokens the sequence holds at one layer.</summary>
        public long SequenceLength(long seq, int layer)
        {
            long length;
            NativeMethods.Check(NativeMethods.sr_seq_length(LiveHandle(), seq, layer, out length));
            return length;
        }

        /// <summary>Keeps only the first newLength tokens in every layer.</summary>
        public void TruncateSequence(long seq, long newLength)
        {
            NativeMethods.Check(NativeMethods.sr_seq_truncate(LiveHandle(), seq, newLength));
        }

        // ------------------------------------------------------------ K/V transfer

        /// <summary>Appends whole tokens of f32 K and V, laid out [n_tokens][NumKvHeads][HeadDim],
        /// converted to the cache's dtype (an Fp8E4m3 cache computes each token's per-kv-head scale).
        /// On SinkRouterException (CacheFull...) nothing is appended.</summary>
        public unsafe void Append(long seq, int layer, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
        {
            long tokens = WholeTokens(k.Length, v.Length);
            fixed (float* kp = &MemoryMarshal.GetReference(k))
            fixed (float* vp = &MemoryMarshal.GetReference(v))
            {
                AppendCore(seq, layer, tokens, (IntPtr)kp, (IntPtr)vp, DType.F32);
            }
        }

        /// <summary>Appends whole tokens given as raw 16-bit elements of <paramref name="dtype"/>
        /// (F16 or Bf16 bit patterns), laid out [n_tokens][NumKvHeads][HeadDim].</summary>
        public unsafe void Append(long seq, int layer, ReadOnlySpan<ushort> k, ReadOnlySpan<ushort> v, DType dtype)
        {
            RequireSixteenBit(dtype);
            long tokens = WholeTokens(k.Length, v.Length);
            fixed (ushort* kp = &MemoryMarshal.GetReference(k))
            fixed (ushort* vp = &MemoryMarshal.GetReference(v))
            {
                AppendCore(seq, layer, tokens, (IntPtr)kp, (IntPtr)vp, dtype);
            }
        }

        /// <summary>Copies tokens [firstToken, firstToken + nTokens) of one layer out as f32. An
        /// empty kOut or vOut means "not wanted"; a non-empty one must hold nTokens tokens.</summary>
        public unsafe void Read(long seq, int layer, long firstToken, long nTokens, Span<float> kOut, Span<float> vOut)
        {
            RequireReadRoom(nTokens, kOut.Length, nameof(kOut));
            RequireReadRoom(nTokens, vOut.Length, nameof(vOut));
            fixed (float* kp = &MemoryMarshal.GetReference(kOut))
            fixed (float* vp = &MemoryMarshal.GetReference(vOut))
            {
                ReadCore(seq, layer, firstToken, nTokens, kOut.Length == 0 ? IntPtr.Zero : (IntPtr)kp,
                         vOut.Length == 0 ? IntPtr.Zero : (IntPtr)vp, DType.F32);
            }
        }

        /// <summary>Read as raw 16-bit elements of <paramref name="dtype"/> (F16 or Bf16).</summary>
        public unsafe void Read(long seq, int layer, long firstToken, long nTokens, Span<ushort> kOut,
                                Span<ushort> vOut, DType dtype)
        {
            RequireSixteenBit(dtype);
            RequireReadRoom(nTokens, kOut.Length, nameof(kOut));
            RequireReadRoom(nTokens, vOut.Length, nameof(vOut));
            fixed (ushort* kp = &MemoryMarshal.GetReference(kOut))
            fixed (ushort* vp = &MemoryMarshal.GetReference(vOut))
            {
                ReadCore(seq, layer, firstToken, nTokens, kOut.Length == 0 ? IntPtr.Zero : (IntPtr)kp,
                         vOut.Length == 0 ? IntPtr.Zero : (IntPtr)vp, dtype);
            }
        }

        // ------------------------------------------------------------ decode

        /// <summary>One decode step of one layer for a batch of sequences, f32 in and out:
        /// q and output are [sequences.Length][numQHeads][HeadDim]. options null = dense.</summary>
        public void Decode(int layer, ReadOnlySpan<long> sequences, int numQHeads, ReadOnlySpan<float> q,
                           Span<float> output, DecodeOptions options)
        {
            Decode(layer, sequences, numQHeads, q, output, Span<float>.Empty, Span<float>.Empty, options);
        }

        /// <summary>As above, and per (sequence, q-head) the softmax mass whose V was skipped and
        /// the certified relative error bound, each [sequences.Length][numQHeads]; pass an empty
        /// span for either you do not want.</summary>
        public void Decode(int layer, ReadOnlySpan<long> sequences, int numQHeads, ReadOnlySpan<float> q,
                           Span<float> output, Span<float> headSkippedMass, Span<float> headErrorBound,
                           DecodeOptions options)
        {
            Decode(layer, sequences, numQHeads, q, output, headSkippedMass, headErrorBound, ReadOnlySpan<float>.Empty,
                   Span<float>.Empty, options);
        }

        /// <summary>As above, with the attention variants' buffers (library 0.3.0).
        /// <paramref name="sinkLogits"/> is [numQHeads]: a learned sink logit per q-head (gpt-oss),
        /// whose exp joins the head's softmax denominator with no value; -inf = no sink for that
        /// head. <paramref name="lse"/> receives [sequences.Length][numQHeads]: the natural log of
        /// each head's whole softmax denominator, sink included, which
        /// Context.MergeAttentionStates takes. An empty span means "none" / "not wanted".</summary>
        public unsafe void Decode(int layer, ReadOnlySpan<long> sequences, int numQHeads, ReadOnlySpan<float> q,
                                  Span<float> output, Span<float> headSkippedMass, Span<float> headErrorBound,
                                  ReadOnlySpan<float> sinkLogits, Span<float> lse, DecodeOptions options)
        {
            if (backend != Backend.Cpu)
                throw new InvalidOperationException(
                    "decode buffers live in the context's memory: on a " + Library.BackendName(backend) +
                    " context pass device pointers to the IntPtr overload of Decode");
            if (sequences.Length >= 1 && numQHeads >= 1)
            {
                long heads = (long)sequences.Length * numQHeads;
                long elements = heads * HeadDim;
                if (q.Length != elements)
                    throw new ArgumentException(
                        $"q holds {q.Length} elements, but batch {sequences.Length} x num_q_heads {numQHeads} x " +
                        $"head_dim {HeadDim} needs {elements}", nameof(q));
                if (output.Length < elements)
                    throw new ArgumentException(
                        $"output holds {output.Length} elements, fewer than the {elements} the step writes", nameof(output));
                RequireOptionalRoom(headSkippedMass.Length, heads, nameof(headSkippedMass));
                RequireOptionalRoom(headErrorBound.Length, heads, nameof(headErrorBound));
                RequireOptionalRoom(lse.Length, heads, nameof(lse));
                if (sinkLogits.Length != 0 && sinkLogits.Length != numQHeads)
                    throw new ArgumentException(
                        $"sinkLogits holds {sinkLogits.Length} elements, but there are {numQHeads} q-heads (num_q_heads)",
                        nameof(sinkLogits));
            }
            fixed (float* qp = &MemoryMarshal.GetReference(q))
            fixed (float* outp = &MemoryMarshal.GetReference(output))
            fixed (float* massp = &MemoryMarshal.GetReference(headSkippedMass))
            fixed (float* boundp = &MemoryMarshal.GetReference(headErrorBound))
            fixed (float* sinkp = &MemoryMarshal.GetReference(sinkLogits))
            fixed (float* lsep = &MemoryMarshal.GetReference(lse))
            {
                DecodeCore(layer, sequences, numQHeads, (IntPtr)qp, (IntPtr)outp,
                           headSkippedMass.Length == 0 ? IntPtr.Zero : (IntPtr)massp,
                           headErrorBound.Length == 0 ? IntPtr.Zero : (IntPtr)boundp,
                           sinkLogits.Length == 0 ? IntPtr.Zero : (IntPtr)sinkp,
                           lse.Length == 0 ? IntPtr.Zero : (IntPtr)lsep, IntPtr.Zero, options, DType.F32);
            }
        }

        /// <summary>Decode with buffers given as pointers into the context's memory (device
        /// memory of a GPU context, host memory of a CPU one), f32, shaped as in the span
        /// overload; headSkippedMass and headErrorBound may be IntPtr.Zero. stream IntPtr.Zero =
        /// the context's stream. On a GPU the step is asynchronous on the stream. The caller
        /// vouches for the sizes: they cannot be checked here.</summary>
        public void Decode(int layer, ReadOnlySpan<long> sequences, int numQHeads, IntPtr q, IntPtr output,
                           IntPtr headSkippedMass, IntPtr headErrorBound, IntPtr stream, DecodeOptions options)
        {
            DecodeCore(layer, sequences, numQHeads, q, output, headSkippedMass, headErrorBound, IntPtr.Zero, IntPtr.Zero,
                       stream, options, DType.F32);
        }

        /// <summary>The pointer overload with the attention variants' buffers: sinkLogits
        /// ([numQHeads]) and lse ([sequences.Length][numQHeads]) in the context's memory, either
        /// IntPtr.Zero for none. (GPU backends refuse sink logits and lse for now.)</summary>
        public void Decode(int layer, ReadOnlySpan<long> sequences, int numQHeads, IntPtr q, IntPtr output,
                           IntPtr headSkippedMass, IntPtr headErrorBound, IntPtr sinkLogits, IntPtr lse, IntPtr stream,
                           DecodeOptions options)
        {
            DecodeCore(layer, sequences, numQHeads, q, output, headSkippedMass, headErrorBound, sinkLogits, lse, stream,
                       options, DType.F32);
        }

        // ------------------------------------------------------------ lifetime

        public bool IsDisposed => disposed;

        /// <summary>Destroys the cache (once the calls in flight on it have returned) and lets go
        /// of its context.</summary>
        public void Dispose()
        {
            disposed = true;
            handle.Dispose();
        }

        // ------------------------------------------------------------ internals

        private KvCacheHandle LiveHandle()
        {
            if (disposed) throw new ObjectDisposedException(nameof(KvCache));
            return handle;
        }

        private void AppendCore(long seq, int layer, long tokens, IntPtr k, IntPtr v, DType dtype)
        {
            sr_kv_io io = HostIo(dtype);
            NativeMethods.Check(NativeMethods.sr_kv_append(LiveHandle(), seq, layer, tokens, k, v, ref io));
        }

        private void ReadCore(long seq, int layer, long firstToken, long nTokens, IntPtr kOut, IntPtr vOut, DType dtype)
        {
            sr_kv_io io = HostIo(dtype);
            NativeMethods.Check(NativeMethods.sr_kv_read(LiveHandle(), seq, layer, firstToken, nTokens, kOut, vOut, ref io));
        }

        /// <summary>The step as the C call takes it; qDType is the library's to check (the public
        /// overloads pass F32).</summary>
        internal unsafe void DecodeCore(int layer, ReadOnlySpan<long> sequences, int numQHeads, IntPtr q, IntPtr output,
                                        IntPtr headSkippedMass, IntPtr headErrorBound, IntPtr sinkLogits,
                                        IntPtr lse, IntPtr stream, DecodeOptions options, DType qDType)
        {
            KvCacheHandle live = LiveHandle();
            sr_decode_args args = (options ?? new DecodeOptions()).ToNative();
            args.layer = layer;
            args.batch = sequences.Length;
            args.num_q_heads = numQHeads;
            args.q = q;
            args.q_dtype = qDType;
            args.@out = output;
            args.out_dtype = DType.F32;
            args.head_skipped_mass = headSkippedMass;
            args.head_error_bound = headErrorBound;
            args.sink_logits = sinkLogits;
            args.lse = lse;
            args.stream = stream;
            fixed (long* ids = &MemoryMarshal.GetReference(sequences))
            {
                args.seq_ids = (IntPtr)ids;
                NativeMethods.Check(NativeMethods.sr_decode_step(live.ContextPointer, live, ref args));
            }
        }

        private static sr_kv_io HostIo(DType dtype)
        {
            var io = new sr_kv_io();
            NativeMethods.Check(NativeMethods.sr_kv_io_default(ref io, NativeMethods.SizeOf<sr_kv_io>()));
            io.dtype = dtype;
            return io;
        }

        /// <summary>Tokens in a K and a V buffer of the given lengths, which must match and hold a
        /// positive whole number of tokens.</summary>
        private long WholeTokens(int kLength, int vLength)
        {
            if (kLength != vLength)
                throw new ArgumentException($"k holds {kLength} elements but v holds {vLength}", "v");
            if (kLength == 0 || kLength % TokenElements != 0)
                throw new ArgumentException(
                    $"k holds {kLength} elements: not a positive whole number of tokens of {TokenElements} " +
                    $"(num_kv_heads {NumKvHeads} x head_dim {HeadDim})", "k");
            return kLength / TokenElements;
        }

        private void RequireReadRoom(long nTokens, int length, string name)
        {
            if (length == 0 || nTokens < 1) return; // not wanted, or the library reports the count
            if (nTokens > length / TokenElements)
                throw new ArgumentException(
                    $"{name} holds {length} elements, fewer than {nTokens} tokens of {TokenElements}", name);
        }

        private static void RequireOptionalRoom(int length, long needed, string name)
        {
            if (length != 0 && length < needed)
                throw new ArgumentException($"{name} holds {length} elements, fewer than the {needed} (sequence, q-head) pairs",
                                            name);
        }

        private static void RequireSixteenBit(DType dtype)
        {
            if (dtype != DType.F16 && dtype != DType.Bf16)
                throw new ArgumentException($"dtype {dtype} is not a 16-bit type (F16 or Bf16)", nameof(dtype));
        }
    }
}
