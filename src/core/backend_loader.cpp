#include "core/backend_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "core/errors.h"

namespace sr {
namespace cpu {
const sr_backend_i* backend_table();
}

#if defined(SR_LINKED_CUDA_BACKEND)
extern "C" sr_status sr_backend_cuda_linked_init(uint32_t, const sr_backend_i**);
#endif

namespace {

std::string library_file(sr_backend kind) {
  return std::string("libsinkrouter-") + sr_backend_name(kind) + ".so";
}

// Directory holding libsinkrouter itself: we are embedded in other programs, so the
// executable's directory says nothing about where our backends sit.
std::string own_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&sr_version_number), &info) == 0 || info.dli_fname == nullptr) return "";
  std::string path = info.dli_fname;
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::vector<std::string> search_directories() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("SINKROUTER_BACKEND_PATH")) {
    std::string list = env;
    size_t start = 0;
    while (start <= list.size()) {
      size_t colon = list.find(':', start);
      if (colon == std::string::npos) colon = list.size();
      if (colon > start) dirs.push_back(list.substr(start, colon - start));
      start = colon + 1;
    }
  }
  std::string own = own_directory();
  if (!own.empty()) dirs.push_back(own);
#if defined(SR_INSTALL_LIBDIR)
  dirs.push_back(SR_INSTALL_LIBDIR);
#endif
  return dirs;
}

const sr_backend_i* try_library(const std::string& path, std::string& why) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = dlerror();
    why = e ? e : "dlopen failed";
    return nullptr;
  }
  auto init = reinterpret_cast<sr_backend_plugin_init_fn>(dlsym(handle, SR_BACKEND_PLUGIN_INIT_SYMBOL));
  const sr_backend_i* table = nullptr;
  if (!init) {
    why = "no symbol " SR_BACKEND_PLUGIN_INIT_SYMBOL;
  } else if (init(SR_BACKEND_IFACE_VERSION, &table) != SR_OK || !table ||
             table->iface_version != SR_BACKEND_IFACE_VERSION) {
    why = "backend interface version mismatch (core expects " + std::to_string(SR_BACKEND_IFACE_VERSION) + ")";
    table = nullptr;
  } else if (const char* missing = missing_backend_entry(table)) {
    why = std::string("its backend table has no ") + missing + " entry";
    table = nullptr;
  }
  if (!table) dlclose(handle);  // unusable: nothing of it is in use
  return table;
}

}  // namespace

const sr_backend_i* load_backend(sr_backend kind) {
  if (kind == SR_BACKEND_CPU) return cpu::backend_table();
  static std::mutex mutex;
  static const sr_backend_i* loaded[4] = {};
  std::lock_guard<std::mutex> lock(mutex);
  if (loaded[kind]) return loaded[kind];
#if defined(SR_LINKED_CUDA_BACKEND)
  if (kind == SR_BACKEND_CUDA && sr_backend_cuda_linked_init(SR_BACKEND_IFACE_VERSION, &loaded[kind]) == SR_OK &&
      !missing_backend_entry(loaded[kind])) {
    return loaded[kind];
  }
  loaded[kind] = nullptr;
#endif
  std::string searched;
  for (const std::string& dir : search_directories()) {
    std::string path = dir + "/" + library_file(kind);
    std::string why;
    if (const sr_backend_i* table = try_library(path, why)) {
      loaded[kind] = table;
      return table;
    }
    searched += "\n  " + path + ": " + why;
  }
  fail(SR_ERR_BACKEND_UNAVAILABLE,
       "the %s backend is not available: %s was not loaded from any of the places searched "
       "(set SINKROUTER_BACKEND_PATH to the folder that holds it):%s",
       sr_backend_name(kind), library_file(kind).c_str(), searched.empty() ? " (none)" : searched.c_str());
}

}  // namespace sr
