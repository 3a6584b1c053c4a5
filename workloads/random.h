// Counter-based random numbers: a value is a pure function of its key, so any slice of a
// synthetic context can be generated alone and reproducibly.
#pragma once

#include <cmath>
#include <cstdint>

namespace sr::workloads {

inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline uint64_t hash_key(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0) {
  return mix64(mix64(mix64(mix64(a) ^ b) ^ c) ^ d);
}

// Uniform in (0, 1).
inline double uniform(uint64_t key) { return (static_cast<double>(mix64(key) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

// Standard normal (Box-Muller on two uniforms of the key).
inline double normal(uint64_t key) {
  double u1 = uniform(key), u2 = uniform(key ^ 0x5851f42d4c957f2dull);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace sr::workloads
