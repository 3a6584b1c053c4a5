#include "io_layout.h"

#include <algorithm>
#include <limits>

#include "c_callers.h"
#include "dtype_rounding.h"

namespace sr_fuzz {
namespace {

constexpr int64_t kMaxBufferElements = int64_t{1} << 20;

// Whether any two rows [offset, offset + head_dim) of the layout share an element.
bool rows_overlap(int64_t tokens, int32_t heads, int32_t head_dim, int64_t ts, int64_t hs) {
  std::vector<__int128> starts;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int32_t h = 0; h < heads; ++h) starts.push_back(static_cast<__int128>(t) * ts + static_cast<__int128>(h) * hs);
  }
  std::sort(starts.begin(), starts.end());
  for (size_t i = 1; i < starts.size(); ++i) {
    if (starts[i] - starts[i - 1] < head_dim) return true;
  }
  return false;
}

}  // namespace

IoLayout pick_io(ByteReader& in, const sr_kv_cache_options& cache, int64_t tokens, Expectation& e) {
  const uint8_t variant = in.u8(), strides = in.u8(), pad = in.u8();
  const int32_t H = cache.num_kv_heads, D = cache.head_dim;
  IoLayout L;
  sr_kv_io_default(&L.io, sizeof L.io);
  L.arg = &L.io;
  switch (variant % 8) {
    case 0: L.arg = nullptr; break;
    case 1: break;  // SR_DTYPE_CACHE
    case 2: L.io.dtype = SR_DTYPE_F32; break;
    case 3: L.io.dtype = SR_DTYPE_F16; break;
    case 4: L.io.dtype = SR_DTYPE_BF16; break;
    case 5:  // not a buffer dtype: unknown values, and FP8 (a cache element type only)
      store_raw(L.io.dtype, variant & 0x80 ? 7 : variant & 0x40 ? SR_DTYPE_FP8_E4M3 : -2);
      e.must_fail({SR_ERR_UNSUPPORTED, SR_ERR_INVALID_ARGUMENT});
      break;
    case 6:
      L.io.struct_size = variant & 0x80 ? 0 : sizeof L.io + 8;
      e.must_fail({SR_ERR_STRUCT_SIZE});
      break;
    default:
      L.io.memory = SR_MEMORY_DEVICE;  // the harness only drives CPU caches
      e.must_fail({SR_ERR_UNSUPPORTED, SR_ERR_INVALID_ARGUMENT});
      break;
  }
  // The buffer type the library would use; the call must fail for variants 5 to 7 anyway.
  L.dtype = variant % 8 >= 5 || L.io.dtype == SR_DTYPE_CACHE ? cache.dtype : L.io.dtype;
  if (L.dtype == SR_DTYPE_FP8_E4M3) {
    // An FP8 cache's K/V travel as f32, f16 or bf16 named in the io: "the cache's own" (a NULL
    // io or SR_DTYPE_CACHE) is refused. The buffers are laid out as f32 for the refused call.
    if (variant % 8 <= 1) e.must_fail({SR_ERR_UNSUPPORTED});
    L.dtype = SR_DTYPE_F32;
  }

  int64_t ts = 0, hs = 0;
  const int64_t pad1 = (pad & 7) * 4, pad2 = (pad >> 3 & 7) * 4;
  bool standard = true;  // a layout any reader of the header must accept
  if (L.arg) {
    switch (strides % 8) {
      case 3:  // padded [t][h][d]
        hs = D + pad1;
        ts = H * hs + pad2;
        break;
      case 4:  // [h][t][d]
        ts = D + pad1;
        hs = tokens * ts + pad2;
        break;
      case 5:  // negative
        ts = pad & 1 ? -D : 0;
        hs = pad & 1 ? 0 : -1;
        e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});
        break;
      case 6:  // rows that may overlap
        hs = pad & 1 ? D / 2 : D;
        ts = pad & 2 ? D / 2 : 0;
        standard = false;
        break;
      case 7: {  // large strides whose far elements may not fit in an int64 offset
        const int64_t big[4] = {std::numeric_limits<int64_t>::max(), int64_t{1} << 62, int64_t{1} << 33,
                                std::numeric_limits<int64_t>::max() / 2 + 1};
        ts = pad & 1 ? big[pad >> 1 & 3] : D / 2;
        hs = pad & 1 ? D : big[pad >> 1 & 3];
        standard = false;
        break;
      }
      default: break;
    }
    L.io.token_stride = ts;
    L.io.head_stride = hs;
  }
  L.head_stride = hs == 0 ? D : hs;
  L.token_stride = ts == 0 ? H * L.head_stride : ts;
  if (L.head_stride < 0 || L.token_stride < 0) {
    L.allocatable = false;
    return L;
  }
  const __int128 last = static_cast<__int128>(tokens - 1) * L.token_stride +
                        static_cast<__int128>(H - 1) * L.head_stride + D;
  if (last > std::numeric_limits<int64_t>::max()) {
    // No buffer has elements past INT64_MAX: whatever the library thinks of the layout, it
    // cannot address them.
    e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});
    L.allocatable = false;
    return L;
  }
  L.extent = static_cast<int64_t>(last);
  L.rows_overlap = rows_overlap(tokens, H, D, L.token_stride, L.head_stride);
  if (!standard || L.rows_overlap) e.unsure();
  L.allocatable = L.extent <= kMaxBufferElements;
  return L;
}

std::vector<unsigned char> make_buffer(const IoLayout& layout, unsigned char fill) {
  return std::vector<unsigned char>(static_cast<size_t>(layout.extent) * element_size(layout.dtype), fill);
}

}  // namespace sr_fuzz
