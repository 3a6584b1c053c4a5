// The routing policy of a decode step, decided once here and handed to every backend in
// sr_step_desc (docs/ARCHITECTURE.md, "The routing policy"). Header-only and free of state, so
// the unit tests call it as the core does.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/backend_iface.h"

namespace sr {

// `a` is checked and has its defaults applied; `longest` is the batch's longest sequence at the
// step's layer; `backend_route_from` the backend's own threshold (sr_backend_i).
inline sr_step_routing decide_routing(const sr_decode_args& a, int64_t longest, int64_t backend_route_from) {
  sr_step_routing r{};
  r.mode = a.routing;
  r.tau = a.tau;
  r.error_budget = a.error_budget;
  r.sink_tokens = a.sink_tokens;
  r.window_tokens = a.window_tokens;
  if (a.routing == SR_ROUTING_OFF) return r;
  // Below the threshold routing costs more than it saves: the step runs dense (exact, bound 0).
  const int64_t route_from = a.route_from_tokens >= 0 ? a.route_from_tokens : backend_route_from;
  if (longest < route_from) {
    r.mode = SR_ROUTING_OFF;
    r.run_dense = 1;
    return r;
  }
  r.enforce_budget = a.routing == SR_ROUTING_BUDGET || (a.routing == SR_ROUTING_TAU && a.error_budget > 0.f);
  // Tau = +inf skips nothing: without a budget to enforce it is the dense step.
  if (a.routing == SR_ROUTING_TAU && std::isinf(a.tau) && !r.enforce_budget) r.mode = SR_ROUTING_OFF;
  return r;
}

}  // namespace sr
