/* The calls of c_callers.h, made from C, where an enum argument may hold any int. */
#include "sinkrouter/sinkrouter.h"

const char* sr_fuzz_c_status_string(int value) { return sr_status_string(value); }
const char* sr_fuzz_c_backend_name(int value) { return sr_backend_name(value); }
size_t sr_fuzz_c_dtype_size(int value) { return sr_dtype_size(value); }
