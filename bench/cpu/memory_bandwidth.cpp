#include "memory_bandwidth.h"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

// Sums 64-byte lines with independent accumulators so the loop is bound by loads.
uint64_t sum_range(const uint64_t* p, size_t n) {
  uint64_t a[8] = {};
  for (size_t i = 0; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) a[j] += p[i + j];
  }
  uint64_t s = 0;
  for (uint64_t x : a) s += x;
  return s;
}

}  // namespace

double measure_read_bandwidth(size_t bytes, int threads, int repeats) {
  std::vector<uint64_t> buffer(bytes / sizeof(uint64_t));
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = i;  // touch every page
  const size_t per_thread = buffer.size() / threads / 8 * 8;
  double best = 0;
  volatile uint64_t sink = 0;
  for (int r = 0; r < repeats; ++r) {
    std::vector<uint64_t> sums(threads);
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] { sums[t] = sum_range(buffer.data() + t * per_thread, per_thread); });
    }
    for (auto& th : pool) th.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (uint64_t x : sums) sink = sink + x;
    best = std::max(best, static_cast<double>(per_thread * threads * sizeof(uint64_t)) / s);
  }
  return best;
}
