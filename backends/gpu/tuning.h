// The GPU backend's tuning knobs, for measurements and tests: one struct, whose defaults are the
// backend's own choices (bench/NOTES.md says how each was measured). A device reads it once,
// when it opens: from the test override if one is set (sr_backend_set_tuning), else from the
// environment (tuning_from_environment, the one place that reads SINKROUTER_CUDA_*; the names
// are the same for HIP). README.md lists the variables.
#pragma once

#include <cstdint>

namespace sr::gpu {

struct Tuning {
  int32_t min_split_tokens = 128;   // SINKROUTER_CUDA_MIN_SPLIT (>= 1): the shortest split worth
                                    // a block of its own
  int32_t prefetch_rows = 64;       // SINKROUTER_CUDA_PREFETCH_ROWS (>= 0): rows ahead of the loads
                                    // that the chunked passes request into the L2 (0: none)
  bool stream_dense = true;         // SINKROUTER_CUDA_DENSE_STREAM=0: dense splits take the chunked
                                    // passes instead of the streamed ones
  int64_t tau_stream_from = 65536;  // SINKROUTER_CUDA_TAU_STREAM_FROM (>= 0): tau steps of one
                                    // sequence this long or longer over 16-token pages stream
  int32_t wave_blocks = 0;          // SINKROUTER_CUDA_WAVE_BLOCKS (>= 0): blocks per SM that a
                                    // launch's split count fills (0: the planner's rule)
  bool adaptive_splits = true;      // SINKROUTER_CUDA_ADAPTIVE_SPLITS=0: every kv-head of a
                                    // routed sequence split alike
  int32_t blocks_per_sm = 0;        // SINKROUTER_CUDA_BLOCKS_PER_SM=3|4: forces one build of the
                                    // shape built twice (0: the planner chooses)
  bool programmatic_launch = true;  // SINKROUTER_CUDA_PDL=0: decode kernels launch without the
                                    // programmatic overlap (CUDA sm_90+)
  int32_t spectral_nodes = 0;       // SINKROUTER_CUDA_SPECTRAL_NODES=1: the routed chunks' bound is
                                    // the whole tree-min bound, nodes of 4-256 pages included, not
                                    // the sum of the pages' terms; 2: budget mode's walk also
                                    // prices a block by the chunk tree's increase
  bool compensate = false;          // SINKROUTER_CUDA_COMPENSATION=1: the storage keeps the layer's
                                    // reference and centred summaries, and routed chunks compensate
                                    // (off until a device run has checked it: bench/NOTES.md, stop 34)
  bool page_sigma = true;           // SINKROUTER_CUDA_PAGE_SIGMA=0: the pages' sigma unused, so the
                                    // routed chunks' bound and walk are the sum of P_B M_B (the
                                    // bound before the spectral summaries, for comparison)
};

// The knobs from the environment: a variable that is unset, not a number or out of range leaves
// the default.
Tuning tuning_from_environment();

// The knobs a device opened now takes: the override if set, else the environment's.
Tuning tuning_for_new_device();

}  // namespace sr::gpu

// Test and benchmark programs only (exported by the backend library, not by libsinkrouter, and
// not part of the public API): devices opened after this call take `tuning`; nullptr returns
// them to the environment's knobs. The caller includes this header: the struct is C++.
#if defined(SR_LINKED_CUDA_BACKEND)
#define SR_BACKEND_TEST_API  // linked into libsinkrouter: kept out of its exports
#else
#define SR_BACKEND_TEST_API __attribute__((visibility("default")))
#endif
extern "C" SR_BACKEND_TEST_API void sr_backend_set_tuning(const sr::gpu::Tuning* tuning);
