// The machine's memory-read bandwidth, measured the way decode reads a cache: every thread
// streams its share of a buffer far larger than the last-level cache.
#pragma once

#include <cstddef>

// Best of `repeats` passes over `bytes` bytes with `threads` threads, in bytes per second.
double measure_read_bandwidth(size_t bytes, int threads, int repeats);
