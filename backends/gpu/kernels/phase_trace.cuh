// Developer builds only (CMake SR_CUDA_PHASE_TRACE=ON): thread 0 of every block stamps the GPU's
// global timer at the decode kernel's phase boundaries into DecodeParams::phase_trace, so a
// step's fixed costs (the start, the partial state, the arrival, the merge) can be told apart
// from its streaming. The backend writes the stamps of a launch to the file named by
// SINKROUTER_PHASE_TRACE; bench/gpu/trace_phases.py reads them.
// In every other build the stamps compile to nothing and DecodeParams has no trace field.
#pragma once

namespace sr::gpu {

// A block's stamps, in the order a block passes them; the last slot holds the SM it ran on.
enum TraceStamp {
  kTraceEntry,           // the kernel starts
  kTraceReady,           // the length, q and the shared state are ready: the split starts
  kTraceSplitDone,       // the split's (m, l, o) is in the block's frame
  kTracePartialWritten,  // the partial state is in global memory
  kTraceArrived,         // the block knows whether it merges its group
  kTraceMergeStates,     // the merging block has every split's weight
  kTraceMergeEnd,        // the merging block has written the outputs and bounds
  kTraceSm,
  kTraceStamps
};
constexpr int kTraceBlocks = 4096;  // blocks of a launch that are traced (the first ones)

#if defined(SR_PHASE_TRACE) && !defined(__HIPCC__)
__device__ __forceinline__ void trace_stamp(unsigned long long* trace, int stamp) {
  if (threadIdx.x != 0) return;
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  if (block >= kTraceBlocks) return;
  unsigned long long now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  trace[block * kTraceStamps + stamp] = now;
  if (stamp == kTraceEntry) {
    unsigned sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    trace[block * kTraceStamps + kTraceSm] = sm;
  }
}
#define SR_TRACE(params, stamp) trace_stamp((params).phase_trace, stamp)
#else
#define SR_TRACE(params, stamp) ((void)0)
#endif

}  // namespace sr::gpu
