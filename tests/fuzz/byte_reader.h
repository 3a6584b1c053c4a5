// The fuzzer's input, read front to back as the arguments of a call sequence. Past the end
// every read returns zero, so any byte string is a valid program, and the seed corpus writer
// (make_corpus.py) lays bytes out in the same order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sr_fuzz {

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }

  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }

  // Little-endian, as Python's struct "<Q" writes it.
  uint64_t u64() {
    uint64_t value = 0;
    for (int i = 0; i < 8; ++i) value |= static_cast<uint64_t>(u8()) << (8 * i);
    return value;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace sr_fuzz
