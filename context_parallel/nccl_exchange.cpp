#include "nccl_exchange.h"

namespace sr::cp {

sr_status exchange_and_merge(ncclComm_t comm, sr_context* context, const StateLayout& layout, const float* state,
                             float* gathered, void* out, sr_dtype out_dtype, float* lse, float* bound,
                             cudaStream_t stream, const char** error) {
  int ranks = 0;
  ncclResult_t r = ncclCommCount(comm, &ranks);
  if (r == ncclSuccess) r = ncclAllGather(state, gathered, static_cast<size_t>(layout.floats()), ncclFloat, comm, stream);
  if (r != ncclSuccess) {
    if (error) *error = ncclGetErrorString(r);
    return SR_ERR_DEVICE;
  }
  return merge_ranks(context, layout, gathered, ranks, out, out_dtype, lse, bound, stream);
}

}  // namespace sr::cp
