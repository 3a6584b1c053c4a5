// Default values of every options/arguments struct, in one place.
#pragma once

#include "sinkrouter/sinkrouter.h"

namespace sr {
void context_options_defaults(sr_context_options* o);
void kv_cache_options_defaults(sr_kv_cache_options* o);
void kv_io_defaults(sr_kv_io* o);
void decode_args_defaults(sr_decode_args* o);
void merge_args_defaults(sr_merge_args* o);
void decode_stats_defaults(sr_decode_stats* o);
}  // namespace sr
