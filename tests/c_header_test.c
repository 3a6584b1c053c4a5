/* The public header used from plain C99: compiles warning-free under -pedantic, and a short
 * program through the whole API runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "sinkrouter/sinkrouter.h"

#define CHECK(call)                                                                  \
  do {                                                                               \
    sr_status s_ = (call);                                                           \
    if (s_ != SR_OK) {                                                               \
      fprintf(stderr, "%s failed: %s: %s\n", #call, sr_status_string(s_), sr_last_error()); \
      return 1;                                                                      \
    }                                                                                \
  } while (0)

int main(void) {
  sr_context_options context_options;
  sr_kv_cache_options cache_options;
  sr_decode_args args;
  sr_context* context = NULL;
  sr_kv_cache* cache = NULL;
  sr_seq_id seq = 0;
  float k[4 * 64], v[4 * 64], q[2 * 64], out[2 * 64];
  int i;

  if (sr_abi_version() != SR_ABI_VERSION) return 1;
  CHECK(sr_context_options_default(&context_options, sizeof context_options));
  context_options.backend = SR_BACKEND_CPU;
  context_options.num_threads = 1;
  CHECK(sr_context_create(&context_options, &context));
  CHECK(sr_kv_cache_options_default(&cache_options, sizeof cache_options));
  cache_options.num_layers = 1;
  cache_options.num_kv_heads = 1;
  cache_options.head_dim = 64;
  cache_options.capacity_tokens = 64;
  cache_options.dtype = SR_DTYPE_F32;
  CHECK(sr_kv_cache_create(context, &cache_options, &cache));
  CHECK(sr_seq_add(cache, &seq));
  for (i = 0; i < 4 * 64; ++i) {
    k[i] = (float)((i * 37) % 11) / 11.0f;
    v[i] = (float)(i % 64);
  }
  for (i = 0; i < 2 * 64; ++i) q[i] = 0.0f;
  CHECK(sr_kv_append(cache, seq, 0, 4, k, v, NULL));
  CHECK(sr_decode_args_default(&args, sizeof args));
  args.batch = 1;
  args.seq_ids = &seq;
  args.num_q_heads = 2;
  args.q = q;
  args.out = out;
  CHECK(sr_decode_step(context, cache, &args));
  /* q = 0: uniform weights, so out is the mean of the four value rows = d. */
  for (i = 0; i < 64; ++i) {
    if (fabsf(out[i] - (float)i) > 1e-4f || fabsf(out[64 + i] - (float)i) > 1e-4f) {
      fprintf(stderr, "out[%d] = %f, expected %d\n", i, out[i], i);
      return 1;
    }
  }
  if (sr_seq_remove(cache, 12345) != SR_ERR_UNKNOWN_SEQUENCE) return 1;
  sr_kv_cache_destroy(cache);
  sr_context_destroy(context);
  sr_kv_cache_destroy(NULL);
  sr_context_destroy(NULL);
  printf("C99 header test passed (%s)\n", sr_version());
  return 0;
}
