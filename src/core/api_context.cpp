// Public functions of the context handle and its statistics.
#include <cstring>
#include <memory>
#include <new>

#include "core/backend_loader.h"
#include "core/context.h"
#include "core/defaults.h"
#include "core/enum_bits.h"
#include "core/errors.h"
#include "core/struct_args.h"

namespace sr {

void context_retain(sr_context* context) { context->references.fetch_add(1, std::memory_order_relaxed); }

void context_release(sr_context* context) {
  if (context->references.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    context->iface->device_close(context->device);
    delete context;
  }
}

namespace {

// Opens the device of one backend; throws if the backend or its device is missing.
sr_context* open_context(sr_backend kind, const sr_context_options& o) {
  const sr_backend_i* iface = load_backend(kind);
  int32_t devices = iface->device_count();
  if (devices <= 0) {
    fail(SR_ERR_BACKEND_UNAVAILABLE, "the %s backend loaded, but it found no device", sr_backend_name(kind));
  }
  if (o.device_index >= devices) {
    fail(SR_ERR_OUT_OF_RANGE, "device_index = %d, but the %s backend found %d device(s)", o.device_index,
         sr_backend_name(kind), devices);
  }
  auto context = std::make_unique<sr_context>();
  sr_backend_error err{};
  check_backend(iface->device_open(o.device_index, o.num_threads, o.stream, &context->device, &err), err,
                "opening the device");
  context->backend = kind;
  context->device_index = o.device_index;
  context->iface = iface;
  return context.release();
}

const sr_context& checked(const sr_context* context) {
  require_not_null(context, "context");
  return *context;
}

}  // namespace
}  // namespace sr

extern "C" {

sr_status sr_context_create(const sr_context_options* options, sr_context** out_context) {
  return sr::guard([&] {
    sr::require_not_null(out_context, "out_context");
    sr_context_options o = sr::read_struct(options, "sr_context_options", sr::context_options_defaults);
    if (sr::enum_bits(o.backend) < SR_BACKEND_AUTO || sr::enum_bits(o.backend) > SR_BACKEND_HIP) {
      sr::fail(SR_ERR_INVALID_ARGUMENT, "backend = %d is not an sr_backend value", sr::enum_bits(o.backend));
    }
    if (o.device_index < 0) sr::fail(SR_ERR_OUT_OF_RANGE, "device_index = %d is negative", o.device_index);
    if (o.num_threads < 0 || o.num_threads > 4096) {
      sr::fail(SR_ERR_OUT_OF_RANGE, "num_threads = %d is out of range [0, 4096]", o.num_threads);
    }
    if (o.backend != SR_BACKEND_AUTO) {
      *out_context = sr::open_context(o.backend, o);
      return;
    }
    // AUTO: the first GPU backend that loads and has the device, else the CPU.
    for (sr_backend kind : {SR_BACKEND_CUDA, SR_BACKEND_HIP}) {
      try {
        *out_context = sr::open_context(kind, o);
        return;
      } catch (const sr::Error&) {
      }
    }
    sr_context_options cpu = o;
    cpu.device_index = 0;
    *out_context = sr::open_context(SR_BACKEND_CPU, cpu);
  });
}

void sr_context_destroy(sr_context* context) {
  if (context) sr::context_release(context);
}

sr_status sr_context_backend(const sr_context* context, sr_backend* out_backend) {
  return sr::guard([&] {
    const sr_context& c = sr::checked(context);
    sr::require_not_null(out_backend, "out_backend");
    *out_backend = c.backend;
  });
}

sr_status sr_context_num_threads(const sr_context* context, int32_t* out_threads) {
  return sr::guard([&] {
    const sr_context& c = sr::checked(context);
    sr::require_not_null(out_threads, "out_threads");
    *out_threads = c.iface->device_threads(c.device);
  });
}

sr_status sr_context_device_name(const sr_context* context, const char** out_name) {
  return sr::guard([&] {
    const sr_context& c = sr::checked(context);
    sr::require_not_null(out_name, "out_name");
    *out_name = c.iface->device_name(c.device);
  });
}

sr_status sr_context_stats(sr_context* context, sr_decode_stats* out_stats, size_t struct_size) {
  return sr::guard([&] {
    const sr_context& c = sr::checked(context);
    sr::require_not_null(out_stats, "out_stats");
    sr::check_struct_size<sr_decode_stats>(struct_size, "sr_decode_stats");
    sr_decode_stats stats;
    sr::decode_stats_defaults(&stats);
    sr_backend_error err{};
    sr::check_backend(c.iface->stats_read(c.device, &stats, &err), err, "reading statistics");
    stats.struct_size = struct_size;
    std::memcpy(out_stats, &stats, struct_size);
  });
}

sr_status sr_context_reset_stats(sr_context* context) {
  return sr::guard([&] {
    const sr_context& c = sr::checked(context);
    sr_backend_error err{};
    sr::check_backend(c.iface->stats_reset(c.device, &err), err, "resetting statistics");
  });
}

}  // extern "C"
