// The caller-side buffer layout of sr_kv_append / sr_kv_read (an sr_kv_io or NULL), picked
// from the input: default, padded [t][h][d], [h][t][d], and the layouts the header rules out
// or leaves open (negative, overlapping, overflowing strides, bad dtype, device memory).
#pragma once

#include <cstdint>
#include <vector>

#include "byte_reader.h"
#include "harness.h"

namespace sr_fuzz {

struct IoLayout {
  const sr_kv_io* arg = nullptr;  // what the call gets: NULL or &io
  sr_kv_io io{};
  sr_dtype dtype = SR_DTYPE_F32;  // element type of the caller's buffers, resolved
  int64_t token_stride = 0;       // resolved strides, in elements
  int64_t head_stride = 0;
  bool rows_overlap = false;
  bool allocatable = true;        // false: no buffer can or should hold it (the call is skipped or must fail)
  int64_t extent = 0;             // elements a buffer needs

  int64_t offset(int64_t t, int64_t h) const { return t * token_stride + h * head_stride; }
};

// Reads three bytes. `tokens` is how many rows per head the call moves (small, >= 1).
IoLayout pick_io(ByteReader& in, const sr_kv_cache_options& cache, int64_t tokens, Expectation& e);

// A buffer of layout.extent elements of layout.dtype, every byte set to `fill`.
std::vector<unsigned char> make_buffer(const IoLayout& layout, unsigned char fill);

}  // namespace sr_fuzz
