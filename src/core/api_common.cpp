// Public functions that need no handle: versions, names, status strings, struct defaults.
#include <cmath>

#include "core/defaults.h"
#include "core/enum_bits.h"
#include "core/errors.h"
#include "core/struct_args.h"
#include "shared_arithmetic/dtype_convert.h"

namespace sr {
const char* last_error();

void context_options_defaults(sr_context_options* o) {
  *o = sr_context_options{};
  o->struct_size = sizeof *o;
  o->backend = SR_BACKEND_AUTO;
}

void kv_cache_options_defaults(sr_kv_cache_options* o) {
  *o = sr_kv_cache_options{};
  o->struct_size = sizeof *o;
  o->head_dim = 128;
  o->page_tokens = 16;
  o->dtype = SR_DTYPE_BF16;
  o->max_batch = 256;
}

void kv_io_defaults(sr_kv_io* o) {
  *o = sr_kv_io{};
  o->struct_size = sizeof *o;
  o->dtype = SR_DTYPE_CACHE;
  o->memory = SR_MEMORY_HOST;
}

void decode_args_defaults(sr_decode_args* o) {
  *o = sr_decode_args{};
  o->struct_size = sizeof *o;
  o->q_dtype = SR_DTYPE_F32;
  o->out_dtype = SR_DTYPE_F32;
  o->routing = SR_ROUTING_OFF;
  o->tau = 12.f;
  o->sink_tokens = 4;
  o->window_tokens = 64;
  o->error_budget = 1e-3f;
  o->route_from_tokens = -1;  // the backend's threshold
  o->window_left = -1;        // every token
}

void merge_args_defaults(sr_merge_args* o) {
  *o = sr_merge_args{};
  o->struct_size = sizeof *o;
  o->state_dtype = SR_DTYPE_F32;
  o->out_dtype = SR_DTYPE_F32;
}

void decode_stats_defaults(sr_decode_stats* o) {
  *o = sr_decode_stats{};
  o->struct_size = sizeof *o;
}

}  // namespace sr

extern "C" {

const char* sr_status_string(sr_status status) {
  switch (sr::enum_bits(status)) {
    case SR_OK: return "SR_OK";
    case SR_ERR_INVALID_ARGUMENT: return "SR_ERR_INVALID_ARGUMENT";
    case SR_ERR_OUT_OF_RANGE: return "SR_ERR_OUT_OF_RANGE";
    case SR_ERR_UNSUPPORTED: return "SR_ERR_UNSUPPORTED";
    case SR_ERR_OUT_OF_MEMORY: return "SR_ERR_OUT_OF_MEMORY";
    case SR_ERR_CACHE_FULL: return "SR_ERR_CACHE_FULL";
    case SR_ERR_UNKNOWN_SEQUENCE: return "SR_ERR_UNKNOWN_SEQUENCE";
    case SR_ERR_BACKEND_UNAVAILABLE: return "SR_ERR_BACKEND_UNAVAILABLE";
    case SR_ERR_DEVICE: return "SR_ERR_DEVICE";
    case SR_ERR_STRUCT_SIZE: return "SR_ERR_STRUCT_SIZE";
    case SR_ERR_INTERNAL: return "SR_ERR_INTERNAL";
  }
  return "SR_ERR_UNKNOWN_STATUS";
}

const char* sr_last_error(void) { return sr::last_error(); }
unsigned sr_version_number(void) { return SR_VERSION_NUMBER; }
const char* sr_version(void) { return SR_VERSION_STRING; }
unsigned sr_abi_version(void) { return SR_ABI_VERSION; }

const char* sr_backend_name(sr_backend backend) {
  switch (sr::enum_bits(backend)) {
    case SR_BACKEND_AUTO: return "auto";
    case SR_BACKEND_CPU: return "cpu";
    case SR_BACKEND_CUDA: return "cuda";
    case SR_BACKEND_HIP: return "hip";
  }
  return "unknown";
}

size_t sr_dtype_size(sr_dtype dtype) { return sr::dtype_element_bytes(sr::enum_bits(dtype)); }

sr_status sr_context_options_default(sr_context_options* options, size_t struct_size) {
  return sr::guard([&] { sr::fill_default(options, struct_size, "sr_context_options", sr::context_options_defaults); });
}

sr_status sr_kv_cache_options_default(sr_kv_cache_options* options, size_t struct_size) {
  return sr::guard([&] { sr::fill_default(options, struct_size, "sr_kv_cache_options", sr::kv_cache_options_defaults); });
}

sr_status sr_kv_io_default(sr_kv_io* io, size_t struct_size) {
  return sr::guard([&] { sr::fill_default(io, struct_size, "sr_kv_io", sr::kv_io_defaults); });
}

sr_status sr_decode_args_default(sr_decode_args* args, size_t struct_size) {
  return sr::guard([&] { sr::fill_default(args, struct_size, "sr_decode_args", sr::decode_args_defaults); });
}

sr_status sr_merge_args_default(sr_merge_args* args, size_t struct_size) {
  return sr::guard([&] { sr::fill_default(args, struct_size, "sr_merge_args", sr::merge_args_defaults); });
}

}  // extern "C"
