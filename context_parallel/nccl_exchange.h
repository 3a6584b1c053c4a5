// The exchange between GPUs of a context-parallel step (README.md here): every rank's packed
// state (sharded_step.h) all-gathered by NCCL, then merged on every rank. NCCL stays out of
// libsinkrouter: this is the only file that talks to it.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include "sharded_step.h"

namespace sr::cp {

// On `stream`: ncclAllGather of this rank's `state` (layout.floats() floats, device memory) into
// `gathered` ([ranks][layout.floats()], device memory; ranks = the communicator's size), then
// merge_ranks into out (out_dtype), lse and bound (device memory; lse and bound may be null).
// Asynchronous, allocates nothing, and capturable in a CUDA graph (decode, collective and merge
// together). SR_ERR_DEVICE with NCCL's message in `error` (when not null) if NCCL fails.
sr_status exchange_and_merge(ncclComm_t comm, sr_context* context, const StateLayout& layout, const float* state,
                             float* gathered, void* out, sr_dtype out_dtype, float* lse, float* bound,
                             cudaStream_t stream, const char** error = nullptr);

}  // namespace sr::cp
