#include "realattn.h"

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace sr::workloads {

namespace {
bool has_manifest(const std::string& dir) { return std::ifstream(dir + "/manifest.json").good(); }

void read_exact(const std::string& path, std::vector<uint16_t>& out, size_t elements) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  out.resize(elements);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(elements * 2));
  if (in.gcount() != static_cast<std::streamsize>(elements * 2)) throw std::runtime_error("short file " + path);
}
}  // namespace

std::string find_realattn_dir() {
  if (const char* env = std::getenv("SINKROUTER_REALATTN_DIR")) {
    return has_manifest(env) ? env : "";
  }
  const char* candidates[] = {
#ifdef SR_SOURCE_DIR
      SR_SOURCE_DIR "/.realattn",
      SR_SOURCE_DIR "/../shared/data/realattn",
#endif
      ".realattn", "../shared/data/realattn", "../../shared/data/realattn", "../../../shared/data/realattn"};
  for (const char* dir : candidates) {
    if (has_manifest(dir)) return dir;
  }
  return "";
}

RealAttnLayer load_realattn_layer(const std::string& dir, int32_t layer) {
  using L = RealAttnLayer;
  RealAttnLayer out;
  std::string base = dir + "/seq0_layer" + std::to_string(layer);
  std::vector<uint16_t> kv;
  const size_t half = static_cast<size_t>(L::kKvHeads) * L::kTokens * L::kHeadDim;
  read_exact(base + ".kv", kv, 2 * half);
  out.k.assign(kv.begin(), kv.begin() + static_cast<std::ptrdiff_t>(half));
  out.v.assign(kv.begin() + static_cast<std::ptrdiff_t>(half), kv.end());
  read_exact(base + ".q", out.q, static_cast<size_t>(L::kQueries) * L::kQHeads * L::kHeadDim);
  return out;
}

}  // namespace sr::workloads
