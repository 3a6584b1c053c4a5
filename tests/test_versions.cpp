// Versions, names, and backend selection (AUTO fallback, a missing backend's message).
#include <cstring>

#include "test_helpers.h"

namespace sr::testing {
namespace {

TEST(Versions, LibraryMatchesHeader) {
  EXPECT_EQ(sr_version_number(), static_cast<unsigned>(SR_VERSION_NUMBER));
  EXPECT_STREQ(sr_version(), SR_VERSION_STRING);
  EXPECT_EQ(sr_abi_version(), static_cast<unsigned>(SR_ABI_VERSION));
}

TEST(Names, StatusBackendAndDtype) {
  EXPECT_STREQ(sr_status_string(SR_ERR_CACHE_FULL), "SR_ERR_CACHE_FULL");
  EXPECT_STREQ(sr_status_string(static_cast<sr_status>(999)), "SR_ERR_UNKNOWN_STATUS");
  EXPECT_STREQ(sr_backend_name(SR_BACKEND_CUDA), "cuda");
  EXPECT_EQ(sr_dtype_size(SR_DTYPE_BF16), 2u);
  EXPECT_EQ(sr_dtype_size(SR_DTYPE_F32), 4u);
  EXPECT_EQ(sr_dtype_size(static_cast<sr_dtype>(7)), 0u);
}

TEST(Backends, CpuContextDescribesItself) {
  auto ctx = make_context(SR_BACKEND_CPU, 2);
  sr_backend backend = SR_BACKEND_AUTO;
  ASSERT_EQ(sr_context_backend(ctx.get(), &backend), SR_OK);
  EXPECT_EQ(backend, SR_BACKEND_CPU);
  int32_t threads = 0;
  ASSERT_EQ(sr_context_num_threads(ctx.get(), &threads), SR_OK);
  EXPECT_EQ(threads, 2);
  const char* name = nullptr;
  ASSERT_EQ(sr_context_device_name(ctx.get(), &name), SR_OK);
  EXPECT_NE(std::strstr(name, "cpu"), nullptr) << name;
}

TEST(Backends, AutoPicksAnAvailableBackend) {
  auto ctx = make_context(SR_BACKEND_AUTO);
  sr_backend backend = SR_BACKEND_AUTO;
  ASSERT_EQ(sr_context_backend(ctx.get(), &backend), SR_OK);
  auto available = test_backends();
  bool gpu_here = available.size() > 1;
  if (!gpu_here) {
    EXPECT_EQ(backend, SR_BACKEND_CPU);
  } else {
    EXPECT_NE(backend, SR_BACKEND_AUTO);
  }
}

// A backend whose library or device is missing fails with a status and says where it looked.
TEST(Backends, MissingBackendIsUnavailableWithSearchedPlaces) {
  for (sr_backend kind : {SR_BACKEND_CUDA, SR_BACKEND_HIP}) {
    sr_context_options o;
    sr_context_options_default(&o, sizeof o);
    o.backend = kind;
    sr_context* ctx = reinterpret_cast<sr_context*>(0x1);
    sr_status status = sr_context_create(&o, &ctx);
    if (status == SR_OK) {  // this machine has that GPU
      sr_context_destroy(ctx);
      continue;
    }
    EXPECT_EQ(status, SR_ERR_BACKEND_UNAVAILABLE) << sr_last_error();
    EXPECT_EQ(ctx, reinterpret_cast<sr_context*>(0x1)) << "out-parameter changed on failure";
    std::string message = sr_last_error();
    EXPECT_NE(message.find(sr_backend_name(kind)), std::string::npos) << message;
    bool explains = message.find("SINKROUTER_BACKEND_PATH") != std::string::npos ||
                    message.find("no device") != std::string::npos;
    EXPECT_TRUE(explains) << message;
  }
}

TEST(Backends, SearchPathEnvironmentIsListed) {
  setenv("SINKROUTER_BACKEND_PATH", "/nonexistent/one:/nonexistent/two", 1);
  sr_context_options o;
  sr_context_options_default(&o, sizeof o);
  o.backend = SR_BACKEND_HIP;
  sr_context* ctx = nullptr;
  sr_status status = sr_context_create(&o, &ctx);
  unsetenv("SINKROUTER_BACKEND_PATH");
  if (status == SR_OK) {
    sr_context_destroy(ctx);
    GTEST_SKIP() << "a HIP device is present";
  }
  std::string message = sr_last_error();
  if (message.find("no device") != std::string::npos) GTEST_SKIP() << "the HIP library loaded: " << message;
  EXPECT_NE(message.find("/nonexistent/one/libsinkrouter-hip.so"), std::string::npos) << message;
  EXPECT_NE(message.find("/nonexistent/two/libsinkrouter-hip.so"), std::string::npos) << message;
}

}  // namespace
}  // namespace sr::testing
