// The HIP backend library on a machine without an AMD GPU (CI): it loads with its ROCm
// dependencies, hands the core a table for the interface version, finds no device, and an
// explicit HIP request fails with SR_ERR_BACKEND_UNAVAILABLE and a message that says the
// library loaded but found no device. Where an AMD GPU is present the device checks skip:
// the shared suite runs against HIP there instead.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "core/backend_iface.h"
#include "sinkrouter/sinkrouter.h"

namespace {

// The ROCm kernel driver's device node: without it the HIP runtime can see no GPU.
bool amd_gpu_present() { return access("/dev/kfd", F_OK) == 0; }

std::string library_directory() {
  std::string path = SR_HIP_LIBRARY;
  return path.substr(0, path.rfind('/'));
}

class HipLibrary : public ::testing::Test {
 protected:
  void SetUp() override {
    handle_ = dlopen(SR_HIP_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    const char* why = handle_ ? nullptr : dlerror();
    ASSERT_NE(handle_, nullptr) << SR_HIP_LIBRARY << ": " << (why ? why : "dlopen failed");
    init_ = reinterpret_cast<sr_backend_plugin_init_fn>(dlsym(handle_, SR_BACKEND_PLUGIN_INIT_SYMBOL));
    ASSERT_NE(init_, nullptr) << "no symbol " SR_BACKEND_PLUGIN_INIT_SYMBOL;
  }
  // Never dlclose: the HIP runtime keeps threads of its own once initialised.

  void* handle_ = nullptr;
  sr_backend_plugin_init_fn init_ = nullptr;
};

TEST_F(HipLibrary, HandsOverACompleteHipTable) {
  const sr_backend_i* table = nullptr;
  ASSERT_EQ(init_(SR_BACKEND_IFACE_VERSION, &table), SR_OK);
  ASSERT_NE(table, nullptr);
  EXPECT_EQ(table->iface_version, SR_BACKEND_IFACE_VERSION);
  EXPECT_STREQ(table->name, "hip");
  for (const void* fn : {reinterpret_cast<const void*>(table->device_count), reinterpret_cast<const void*>(table->device_open),
                         reinterpret_cast<const void*>(table->device_close), reinterpret_cast<const void*>(table->device_name),
                         reinterpret_cast<const void*>(table->storage_create), reinterpret_cast<const void*>(table->storage_destroy),
                         reinterpret_cast<const void*>(table->write_tokens), reinterpret_cast<const void*>(table->read_tokens),
                         reinterpret_cast<const void*>(table->copy_page), reinterpret_cast<const void*>(table->trim_page),
                         reinterpret_cast<const void*>(table->sequence_update), reinterpret_cast<const void*>(table->decode),
                         reinterpret_cast<const void*>(table->stats_read), reinterpret_cast<const void*>(table->stats_reset)}) {
    EXPECT_NE(fn, nullptr);
  }
}

TEST_F(HipLibrary, RejectsAnotherInterfaceVersion) {
  const sr_backend_i* table = reinterpret_cast<const sr_backend_i*>(0x1);
  EXPECT_EQ(init_(SR_BACKEND_IFACE_VERSION + 1, &table), SR_ERR_UNSUPPORTED);
  EXPECT_EQ(table, reinterpret_cast<const sr_backend_i*>(0x1)) << "out-parameter changed on failure";
}

TEST_F(HipLibrary, FindsNoDeviceAndRefusesToOpenOne) {
  if (amd_gpu_present()) GTEST_SKIP() << "/dev/kfd exists: an AMD GPU may be present";
  const sr_backend_i* table = nullptr;
  ASSERT_EQ(init_(SR_BACKEND_IFACE_VERSION, &table), SR_OK);
  EXPECT_EQ(table->device_count(), 0);
  EXPECT_EQ(table->device_count(), 0) << "a second query must not change the answer";
  sr_backend_device* device = reinterpret_cast<sr_backend_device*>(0x1);
  sr_backend_error err{};
  EXPECT_EQ(table->device_open(0, 0, nullptr, &device, &err), SR_ERR_BACKEND_UNAVAILABLE);
  EXPECT_EQ(device, reinterpret_cast<sr_backend_device*>(0x1)) << "out-parameter changed on failure";
  EXPECT_NE(std::string(err.message).find("0 hip device"), std::string::npos) << err.message;
}

// Through the public API, the way an application meets it: the core finds the library in
// SINKROUTER_BACKEND_PATH, loads it, and reports that it found no device.
TEST(HipThroughTheCore, ExplicitRequestIsUnavailableWithNoDevice) {
  if (amd_gpu_present()) GTEST_SKIP() << "/dev/kfd exists: an AMD GPU may be present";
  ASSERT_EQ(setenv("SINKROUTER_BACKEND_PATH", library_directory().c_str(), 1), 0);
  sr_context_options o;
  ASSERT_EQ(sr_context_options_default(&o, sizeof o), SR_OK);
  o.backend = SR_BACKEND_HIP;
  sr_context* ctx = reinterpret_cast<sr_context*>(0x1);
  EXPECT_EQ(sr_context_create(&o, &ctx), SR_ERR_BACKEND_UNAVAILABLE) << sr_last_error();
  EXPECT_EQ(ctx, reinterpret_cast<sr_context*>(0x1)) << "out-parameter changed on failure";
  std::string message = sr_last_error();
  EXPECT_NE(message.find("hip"), std::string::npos) << message;
  EXPECT_NE(message.find("no device"), std::string::npos) << message;
  // "no device", not "library not found": the library itself loaded.
  EXPECT_EQ(message.find("was not loaded"), std::string::npos) << message;
}

TEST(HipThroughTheCore, AutoFallsBackToTheCpu) {
  if (amd_gpu_present()) GTEST_SKIP() << "/dev/kfd exists: an AMD GPU may be present";
  ASSERT_EQ(setenv("SINKROUTER_BACKEND_PATH", library_directory().c_str(), 1), 0);
  sr_context_options o;
  ASSERT_EQ(sr_context_options_default(&o, sizeof o), SR_OK);
  o.backend = SR_BACKEND_AUTO;
  sr_context* ctx = nullptr;
  ASSERT_EQ(sr_context_create(&o, &ctx), SR_OK) << sr_last_error();
  sr_backend backend = SR_BACKEND_AUTO;
  EXPECT_EQ(sr_context_backend(ctx, &backend), SR_OK);
  sr_context_destroy(ctx);
  // A CUDA library in the same folder (a build with both backends) may have a device.
  EXPECT_TRUE(backend == SR_BACKEND_CPU || backend == SR_BACKEND_CUDA) << sr_backend_name(backend);
}

}  // namespace
