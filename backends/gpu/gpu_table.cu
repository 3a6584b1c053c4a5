// The GPU backend's table for the core: devices, statistics, and the one exported symbol.
#include <cstdio>
#include <new>

#include "gpu_backend.h"

namespace sr::gpu {

sr_status check(gpuError_t status, const char* what, sr_backend_error* err) {
  if (status == gpuSuccess) return SR_OK;
  set_backend_error(err, "%s: %s runtime error %d (%s)", what, SR_GPU_VENDOR, static_cast<int>(status),
            gpuGetErrorString(status));
  return status == gpuErrorMemoryAllocation ? SR_ERR_OUT_OF_MEMORY : SR_ERR_DEVICE;
}

namespace {

// Below this length a routed step runs dense unless the caller says otherwise: shorter, every
// routed mode measured slower than dense on the H100 (bench/RESULTS.md, bench/NOTES.md). HIP
// shares the figure, unmeasured.
constexpr int64_t kRouteFromTokens = 65536;

int32_t device_count() {
  int count = 0;
  if (gpuGetDeviceCount(&count) != gpuSuccess) {
    (void)gpuGetLastError();  // a machine without a driver: not an error to keep around
    return 0;
  }
  return count;
}

sr_status device_open(int32_t index, int32_t, void* stream, sr_backend_device** out, sr_backend_error* err) {
  int32_t count = device_count();
  if (index < 0 || index >= count) {
    set_backend_error(err, "device_index = %d, but %d %s device(s) were found", index, count, SR_GPU_VENDOR);
    return count == 0 ? SR_ERR_BACKEND_UNAVAILABLE : SR_ERR_OUT_OF_RANGE;
  }
  sr_status s = check(gpuSetDevice(index), "selecting the device", err);
  if (s != SR_OK) return s;
  gpuDeviceProp prop{};
  if ((s = check(gpuGetDeviceProperties(&prop, index), "reading the device properties", err)) != SR_OK) return s;
  auto device = new (std::nothrow) sr_backend_device;
  if (!device) return SR_ERR_OUT_OF_MEMORY;
  device->index = index;
  device->stream = static_cast<gpuStream_t>(stream);
  device->sm_count = prop.multiProcessorCount;
  device->tuning = tuning_for_new_device();
  device->programmatic_launch = programmatic_launch_supported(prop) && device->tuning.programmatic_launch;
  char name[512];
  std::snprintf(name, sizeof name, "%s %d: %s, %d SMs, %.1f GiB", SR_GPU_VENDOR, index, prop.name,
                prop.multiProcessorCount, static_cast<double>(prop.totalGlobalMem) / (1u << 30));
  device->name = name;
  s = check(gpuMalloc(reinterpret_cast<void**>(&device->stats), sizeof(DeviceStats)), "allocating statistics", err);
  if (s == SR_OK) s = check(gpuMemset(device->stats, 0, sizeof(DeviceStats)), "clearing statistics", err);
  if (s != SR_OK) {
    (void)gpuFree(device->stats);
    delete device;
    return s;
  }
  *out = device;
  return SR_OK;
}

void device_close(sr_backend_device* device) {
  if (!device) return;
  DeviceScope scope(device);
  (void)gpuFree(device->stats);
  delete device;
}

const char* device_name(const sr_backend_device* device) { return device->name.c_str(); }
int32_t device_threads(const sr_backend_device*) { return 0; }

float bits_float(unsigned int bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

sr_status stats_read(sr_backend_device* device, sr_decode_stats* out, sr_backend_error* err) {
  DeviceScope scope(device);
  sr_status s = check(gpuStreamSynchronize(device->stream), "waiting for the context's stream", err);
  DeviceStats d{};
  if (s == SR_OK) s = check(gpuMemcpy(&d, device->stats, sizeof d, gpuMemcpyDeviceToHost), "reading statistics", err);
  if (s != SR_OK) return s;
  sr_decode_stats r{};
  r.struct_size = sizeof r;
  r.steps = static_cast<int64_t>(d.steps);
  r.heads = static_cast<int64_t>(d.heads);
  r.blocks_total = static_cast<int64_t>(d.blocks_total);
  r.blocks_v_skipped = static_cast<int64_t>(d.blocks_v_skipped);
  r.heads_recomputed = static_cast<int64_t>(d.heads_recomputed);
  r.max_skipped_mass = bits_float(d.max_skipped_mass_bits);
  r.max_error_bound = bits_float(d.max_error_bound_bits);
  r.steps_run_dense = static_cast<int64_t>(d.steps_run_dense);
  *out = r;
  return SR_OK;
}

sr_status stats_reset(sr_backend_device* device, sr_backend_error* err) {
  DeviceScope scope(device);
  return check(gpuMemsetAsync(device->stats, 0, sizeof(DeviceStats), device->stream), "clearing statistics", err);
}

sr_backend_i make_table() {
  sr_backend_i t{};
  t.iface_version = SR_BACKEND_IFACE_VERSION;
  t.name = SR_GPU_VENDOR;
  t.route_from_tokens = kRouteFromTokens;
  SR_BACKEND_TABLE_ENTRIES(t);
  t.sequence_update = sequence_update;  // device page tables that a replayed graph reads
  return t;
}
const sr_backend_i kTable = make_table();

}  // namespace
}  // namespace sr::gpu

// Linked into libsinkrouter (single-library builds) the core calls this directly; loaded as
// a plugin it is reached through sr_backend_plugin_init.
extern "C" __attribute__((visibility("default"))) sr_status sr_backend_cuda_linked_init(uint32_t iface_version,
                                                                                      const sr_backend_i** out) {
  if (!out || iface_version != SR_BACKEND_IFACE_VERSION) return SR_ERR_UNSUPPORTED;
  *out = &sr::gpu::kTable;
  return SR_OK;
}

#if !defined(SR_LINKED_CUDA_BACKEND)
extern "C" __attribute__((visibility("default"))) sr_status sr_backend_plugin_init(uint32_t iface_version,
                                                                                 const sr_backend_i** out) {
  return sr_backend_cuda_linked_init(iface_version, out);
}
#endif
