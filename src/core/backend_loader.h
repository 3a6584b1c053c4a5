// Finding a backend's table: the CPU is built in; CUDA and HIP come from libraries loaded at
// run time (or linked in, for single-library builds). Loaded libraries are never unloaded.
#pragma once

#include "core/backend_iface.h"

namespace sr {

// The table of a backend (never AUTO), or throws SR_ERR_BACKEND_UNAVAILABLE with a message
// listing every place searched and why each failed.
const sr_backend_i* load_backend(sr_backend kind);

}  // namespace sr
