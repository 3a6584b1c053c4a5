// The backends the suite runs against, and the decode call with host buffers it uses on each.
#pragma once

#include <string>
#include <vector>

#include "device_buffers.h"
#include "sinkrouter/sinkrouter.h"

namespace sr::testing {

using workloads::decode_with_host_buffers;
using workloads::device_memory;
using workloads::DeviceMemoryOps;

// The CPU always, plus each GPU backend whose context opens on this machine (and for which
// this build has device memory support). SINKROUTER_TEST_BACKENDS=cpu,cuda restricts the list.
std::vector<sr_backend> test_backends();
std::string backend_label(sr_backend backend);

}  // namespace sr::testing
