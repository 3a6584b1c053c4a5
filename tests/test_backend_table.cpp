// The core refuses a backend table with a missing entry (backend_loader.cpp asks
// missing_backend_entry of every table it loads), and the routing policy of a step is decided
// in one place (core/routing_policy.h) for every backend.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/backend_iface.h"
#include "core/routing_policy.h"

namespace sr {
namespace {

// A table whose every entry is set (the entries are never called here).
sr_backend_i complete_table() {
  sr_backend_i t{};
  t.iface_version = SR_BACKEND_IFACE_VERSION;
  t.name = "test";
  t.device_count = [] { return int32_t{0}; };
  t.device_open = [](int32_t, int32_t, void*, sr_backend_device**, sr_backend_error*) { return SR_OK; };
  t.device_close = [](sr_backend_device*) {};
  t.device_name = [](const sr_backend_device*) { return "test"; };
  t.device_threads = [](const sr_backend_device*) { return int32_t{1}; };
  t.storage_create = [](sr_backend_device*, const sr_cache_geometry*, sr_backend_storage**, sr_backend_error*) { return SR_OK; };
  t.storage_destroy = [](sr_backend_storage*) {};
  t.write_tokens = [](sr_backend_storage*, int32_t, const int32_t*, int64_t, int64_t, const void*, const void*,
                      const sr_kv_io*, sr_backend_error*) { return SR_OK; };
  t.read_tokens = [](const sr_backend_storage*, int32_t, const int32_t*, int64_t, int64_t, void*, void*,
                     const sr_kv_io*, sr_backend_error*) { return SR_OK; };
  t.copy_page = [](sr_backend_storage*, int32_t, int32_t, sr_backend_error*) { return SR_OK; };
  t.trim_page = [](sr_backend_storage*, int32_t, int32_t, int32_t, sr_backend_error*) { return SR_OK; };
  t.sequence_update = [](sr_backend_storage*, int64_t, const int32_t*, int64_t, const int64_t*, sr_backend_error*) {
    return SR_OK;
  };
  t.decode = [](sr_backend_device*, sr_backend_storage*, const sr_step_desc*, sr_backend_error*) { return SR_OK; };
  t.merge_states = [](sr_backend_device*, const sr_merge_desc*, sr_backend_error*) { return SR_OK; };
  t.stats_read = [](sr_backend_device*, sr_decode_stats*, sr_backend_error*) { return SR_OK; };
  t.stats_reset = [](sr_backend_device*, sr_backend_error*) { return SR_OK; };
  return t;
}

TEST(BackendTable, ACompleteTableIsAccepted) {
  const sr_backend_i t = complete_table();
  EXPECT_EQ(missing_backend_entry(&t), nullptr);
  sr_backend_i without_optional = t;
  without_optional.sequence_update = nullptr;  // optional: host page tables
  EXPECT_EQ(missing_backend_entry(&without_optional), nullptr);
}

TEST(BackendTable, EachMissingRequiredEntryIsNamed) {
  struct Entry {
    const char* name;
    void (*clear)(sr_backend_i&);
  };
  const Entry entries[] = {
      {"name", [](sr_backend_i& t) { t.name = nullptr; }},
      {"device_count", [](sr_backend_i& t) { t.device_count = nullptr; }},
      {"device_open", [](sr_backend_i& t) { t.device_open = nullptr; }},
      {"device_close", [](sr_backend_i& t) { t.device_close = nullptr; }},
      {"device_name", [](sr_backend_i& t) { t.device_name = nullptr; }},
      {"device_threads", [](sr_backend_i& t) { t.device_threads = nullptr; }},
      {"storage_create", [](sr_backend_i& t) { t.storage_create = nullptr; }},
      {"storage_destroy", [](sr_backend_i& t) { t.storage_destroy = nullptr; }},
      {"write_tokens", [](sr_backend_i& t) { t.write_tokens = nullptr; }},
      {"read_tokens", [](sr_backend_i& t) { t.read_tokens = nullptr; }},
      {"copy_page", [](sr_backend_i& t) { t.copy_page = nullptr; }},
      {"trim_page", [](sr_backend_i& t) { t.trim_page = nullptr; }},
      {"decode", [](sr_backend_i& t) { t.decode = nullptr; }},
      {"stats_read", [](sr_backend_i& t) { t.stats_read = nullptr; }},
      {"stats_reset", [](sr_backend_i& t) { t.stats_reset = nullptr; }},
  };
  for (const Entry& e : entries) {
    sr_backend_i t = complete_table();
    e.clear(t);
    const char* missing = missing_backend_entry(&t);
    ASSERT_NE(missing, nullptr) << e.name;
    EXPECT_EQ(std::string(missing), e.name);
  }
}

sr_decode_args routed_args(sr_routing_mode mode, float tau, float budget) {
  sr_decode_args a;
  sr_decode_args_default(&a, sizeof a);
  a.routing = mode;
  a.tau = tau;
  a.error_budget = budget;
  return a;
}

TEST(RoutingPolicy, EffectiveModeBudgetAndAnchorAreDecidedOnce) {
  // Routing off stays off, enforces nothing.
  sr_step_routing r = decide_routing(routed_args(SR_ROUTING_OFF, 12.f, 1e-3f), 1 << 20, 0);
  EXPECT_EQ(r.mode, SR_ROUTING_OFF);
  EXPECT_EQ(r.enforce_budget, 0);
  EXPECT_EQ(r.run_dense, 0);
  // Budget mode enforces its budget; the anchor set is carried.
  sr_decode_args a = routed_args(SR_ROUTING_BUDGET, 12.f, 1e-2f);
  a.sink_tokens = 7;
  a.window_tokens = 33;
  r = decide_routing(a, 100000, 0);
  EXPECT_EQ(r.mode, SR_ROUTING_BUDGET);
  EXPECT_EQ(r.enforce_budget, 1);
  EXPECT_EQ(r.error_budget, 1e-2f);
  EXPECT_EQ(r.sink_tokens, 7);
  EXPECT_EQ(r.window_tokens, 33);
  // Tau mode enforces a budget only where one is given.
  EXPECT_EQ(decide_routing(routed_args(SR_ROUTING_TAU, 12.f, 0.f), 100000, 0).enforce_budget, 0);
  EXPECT_EQ(decide_routing(routed_args(SR_ROUTING_TAU, 12.f, 1e-3f), 100000, 0).enforce_budget, 1);
  // Tau = +inf skips nothing: dense without a budget, routed (and capped) with one.
  r = decide_routing(routed_args(SR_ROUTING_TAU, INFINITY, 0.f), 100000, 0);
  EXPECT_EQ(r.mode, SR_ROUTING_OFF);
  EXPECT_EQ(r.run_dense, 0);  // not a step below the threshold
  r = decide_routing(routed_args(SR_ROUTING_TAU, INFINITY, 1e-3f), 100000, 0);
  EXPECT_EQ(r.mode, SR_ROUTING_TAU);
  EXPECT_EQ(r.enforce_budget, 1);
}

TEST(RoutingPolicy, StepsBelowRouteFromTokensRunDense) {
  // The backend's threshold applies when the caller leaves route_from_tokens at -1.
  sr_decode_args a = routed_args(SR_ROUTING_BUDGET, 12.f, 1e-3f);
  ASSERT_EQ(a.route_from_tokens, -1);
  sr_step_routing r = decide_routing(a, 65535, 65536);
  EXPECT_EQ(r.mode, SR_ROUTING_OFF);
  EXPECT_EQ(r.run_dense, 1);
  EXPECT_EQ(r.enforce_budget, 0);
  r = decide_routing(a, 65536, 65536);
  EXPECT_EQ(r.mode, SR_ROUTING_BUDGET);
  EXPECT_EQ(r.run_dense, 0);
  // The caller's threshold wins; 0 routes every step.
  a.route_from_tokens = 0;
  EXPECT_EQ(decide_routing(a, 1, 65536).mode, SR_ROUTING_BUDGET);
  a.route_from_tokens = 1000;
  EXPECT_EQ(decide_routing(a, 999, 0).run_dense, 1);
}

}  // namespace
}  // namespace sr
