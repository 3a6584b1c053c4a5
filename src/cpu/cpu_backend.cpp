// The CPU backend's table for the core: the built-in, always-available backend.
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>

#include "cpu/cpu_backend.h"

namespace sr::cpu {
namespace {

int32_t device_count() { return 1; }

sr_status device_open(int32_t index, int32_t num_threads, void*, sr_backend_device** out,
                      sr_backend_error* err) {
  if (index != 0) {
    set_backend_error(err, "device_index = %d, but the CPU backend has one device (index 0)", index);
    return SR_ERR_OUT_OF_RANGE;
  }
  if (num_threads == 0) {
    unsigned cores = std::thread::hardware_concurrency();
    num_threads = cores == 0 ? 1 : static_cast<int32_t>(cores);
  }
  auto device = new (std::nothrow) sr_backend_device;
  if (!device) return SR_ERR_OUT_OF_MEMORY;
  try {
    device->pool = std::make_unique<ThreadPool>(num_threads);
  } catch (...) {
    delete device;
    set_backend_error(err, "could not start %d worker threads", num_threads);
    return SR_ERR_OUT_OF_MEMORY;
  }
  const char* isa = "generic";
  device->split_kernel = select_split_kernel(&isa);
  if (const char* compensation = std::getenv("SINKROUTER_CPU_COMPENSATION")) device->compensate = std::strcmp(compensation, "0") != 0;
  device->name = "cpu: " + std::to_string(num_threads) + " threads, " + isa;
  device->stats.struct_size = sizeof(sr_decode_stats);
  *out = device;
  return SR_OK;
}

void device_close(sr_backend_device* device) { delete device; }
const char* device_name(const sr_backend_device* device) { return device->name.c_str(); }
int32_t device_threads(const sr_backend_device* device) { return device->pool->size(); }

sr_status stats_read(sr_backend_device* device, sr_decode_stats* out, sr_backend_error*) {
  std::lock_guard<std::mutex> lock(device->stats_mutex);
  *out = device->stats;
  return SR_OK;
}

sr_status stats_reset(sr_backend_device* device, sr_backend_error*) {
  std::lock_guard<std::mutex> lock(device->stats_mutex);
  device->stats = sr_decode_stats{};
  device->stats.struct_size = sizeof(sr_decode_stats);
  return SR_OK;
}

sr_backend_i make_table() {
  sr_backend_i t{};
  t.iface_version = SR_BACKEND_IFACE_VERSION;
  t.name = "cpu";
  t.route_from_tokens = 0;  // skipping V saves the CPU its work at every length
  SR_BACKEND_TABLE_ENTRIES(t);
  t.sequence_update = nullptr;  // optional: page tables live in host memory
  return t;
}
const sr_backend_i kTable = make_table();

}  // namespace

const sr_backend_i* backend_table() { return &kTable; }

}  // namespace sr::cpu
