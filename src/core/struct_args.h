// Options structs that grow: struct_size says which version of the struct the caller was built
// with. Each struct's known versions are listed once, in struct_sizes<T> below. A caller's struct
// of an older, smaller known version is read as its prefix over the defaults (fields it does not
// know keep their defaults); fill_default and outputs write only the caller's prefix. A size
// that is not listed (larger: a newer header than this library; in between: it would cut a
// field; 0, 3, ...) is refused with SR_ERR_STRUCT_SIZE.
//
// Appending a field to an options struct (a later issue):
//   1. append it at the end of the struct in include/sinkrouter/sinkrouter.h (never in between);
//   2. append SR_STRUCT_VERSION(the struct, the new last field) to its list below; older
//      entries stay, so programs built against the older header keep working;
//   3. give it its default in the struct's *_defaults function (declared in src/core/defaults.h,
//      defined in src/core/api_common.cpp): that is what an older caller gets.
// The static_asserts in check_struct_versions catch a list whose last size is not sizeof, and
// sizes that do not grow (an appended int32 that only fills the old tail padding leaves sizeof
// as it was: then old and new callers could not be told apart; append fields that make the
// struct grow, e.g. two int32 or one 8-byte field).
//
// The pure functions (find_struct_version, try_read_struct, try_fill_default) return a status
// and a message and never throw: the tests call them directly (sr::fail is not exported from
// the library). read_struct, fill_default and check_struct_size are their throwing wrappers.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstring>

#include "core/errors.h"
#include "sinkrouter/sinkrouter.h"

namespace sr {

// One version of an options struct as a caller compiled it.
struct struct_version {
  size_t size;        // that version's sizeof: the struct_size its callers pass (*_default(p, sizeof *p))
  size_t fields_end;  // where its last field ends: size less its tail padding. Reads copy only
                      // these bytes, so an old caller's padding never lands in a newer field.
};

constexpr size_t round_up(size_t n, size_t alignment) { return (n + alignment - 1) / alignment * alignment; }

// The version of struct T whose last field is `last_field`. Its size is what sizeof gave for
// that version: the end of its last field rounded up to the struct's alignment. (Every struct
// starts with size_t struct_size, and appended fields need no stricter alignment than the struct
// already has, so alignof(T) is every version's alignment.) Written from offsetof and not as a
// number, so each list holds on every ABI (32-bit, 64-bit) without change; the v1 entries equal
// sizeof today, which the static_asserts check.
#define SR_STRUCT_VERSION(T, last_field)                                                       \
  ::sr::struct_version {                                                                       \
    ::sr::round_up(offsetof(T, last_field) + sizeof(T::last_field), alignof(T)),               \
        offsetof(T, last_field) + sizeof(T::last_field)                                        \
  }

// The known versions of each options struct, oldest first. No primary definition: a struct
// without a list does not compile. (The tests specialise it for a test-only struct.)
template <class T>
struct struct_sizes;

template <>
struct struct_sizes<sr_context_options> {
  static constexpr struct_version known[] = {
      SR_STRUCT_VERSION(sr_context_options, stream),  // v1 (0.1.0)
  };
};

template <>
struct struct_sizes<sr_kv_cache_options> {
  static constexpr struct_version known[] = {
      SR_STRUCT_VERSION(sr_kv_cache_options, max_q_heads),  // v1 (0.1.0)
  };
};

template <>
struct struct_sizes<sr_kv_io> {
  static constexpr struct_version known[] = {
      SR_STRUCT_VERSION(sr_kv_io, stream),  // v1 (0.1.0)
  };
};

template <>
struct struct_sizes<sr_decode_args> {
  static constexpr struct_version known[] = {
      SR_STRUCT_VERSION(sr_decode_args, stream),             // v1 (0.1.0, abi/libsinkrouter.so.1.abi)
      SR_STRUCT_VERSION(sr_decode_args, route_from_tokens),  // v2: + route_from_tokens
      SR_STRUCT_VERSION(sr_decode_args, logit_soft_cap),     // v3 (0.3.0): + attention variants
  };
};

template <>
struct struct_sizes<sr_merge_args> {
  static constexpr struct_version known[] = {
      SR_STRUCT_VERSION(sr_merge_args, stream),  // v1 (0.3.0)
  };
};

template <>
struct struct_sizes<sr_decode_stats> {  // an output: sr_context_stats writes the caller's prefix
  static constexpr struct_version known[] = {
      SR_STRUCT_VERSION(sr_decode_stats, max_error_bound),  // v1 (0.1.0, abi/libsinkrouter.so.1.abi)
      SR_STRUCT_VERSION(sr_decode_stats, steps_run_dense),  // v2: + steps_run_dense
  };
};

// True if T's list is well formed: sizes and field ends grow strictly, each field end lies
// within its size, and the newest entry is today's sizeof.
template <class T>
constexpr bool check_struct_versions() {
  const auto& known = struct_sizes<T>::known;
  const size_t n = sizeof known / sizeof known[0];
  for (size_t i = 0; i < n; ++i) {
    if (known[i].fields_end <= sizeof(size_t) || known[i].fields_end > known[i].size) return false;
    if (i > 0 && (known[i].size <= known[i - 1].size || known[i].fields_end <= known[i - 1].fields_end)) return false;
  }
  return known[n - 1].size == sizeof(T);
}

// The outcome of a size check, with its message (empty on success).
struct struct_check {
  sr_status status = SR_OK;
  char message[320] = {};
};

// The version of T a caller's struct_size names, or nullptr with SR_ERR_STRUCT_SIZE and the
// message in `check`. Never throws.
template <class T>
const struct_version* find_struct_version(size_t struct_size, const char* name, struct_check* check) noexcept {
  static_assert(check_struct_versions<T>(),
                "struct_sizes<T>: sizes must grow, and the last must be sizeof(T) (src/core/struct_args.h)");
  const auto& known = struct_sizes<T>::known;
  const size_t n = sizeof known / sizeof known[0];
  for (size_t i = 0; i < n; ++i) {
    if (known[i].size == struct_size) return &known[i];
  }
  // "sr_kv_io.struct_size = 56, but this library (0.1.0) knows sr_kv_io of 48 bytes"; several
  // versions read "of 120 or 128 bytes".
  char sizes[160] = {};
  size_t used = 0;
  for (size_t i = 0; i < n && used < sizeof sizes; ++i) {
    const char* separator = i == 0 ? "" : i + 1 == n ? " or " : ", ";
    int wrote = std::snprintf(sizes + used, sizeof sizes - used, "%s%zu", separator, known[i].size);
    if (wrote < 0) break;
    used += static_cast<size_t>(wrote);
  }
  const char* why = struct_size > known[n - 1].size ? " (built against a newer header than this library?)" : "";
  std::snprintf(check->message, sizeof check->message, "%s.struct_size = %zu, but this library (%s) knows %s of %s bytes%s",
                name, struct_size, SR_VERSION_STRING, name, sizes, why);
  check->status = SR_ERR_STRUCT_SIZE;
  return nullptr;
}

// Reads a caller's struct into *out: defaults, then the caller's known prefix over them (its
// struct_size read once). in == NULL gives the defaults. On failure *out is left alone.
// out->struct_size is sizeof(T) after: *out is a whole struct of this library's version.
template <class T>
struct_check try_read_struct(const T* in, const char* name, void (*defaults)(T*), T* out) {
  struct_check check;
  T value;
  defaults(&value);
  if (in != nullptr) {
    size_t struct_size;
    std::memcpy(&struct_size, in, sizeof struct_size);
    const struct_version* version = find_struct_version<T>(struct_size, name, &check);
    if (version == nullptr) return check;
    std::memcpy(static_cast<void*>(&value), in, version->fields_end);
    value.struct_size = sizeof(T);
  }
  *out = value;
  return check;
}

// Writes `value` into a caller's struct of a known version: exactly version.size bytes, with
// struct_size = version.size; nothing past them.
template <class T>
void write_struct_prefix(T* out, T value, const struct_version& version) {
  value.struct_size = version.size;
  std::memcpy(static_cast<void*>(out), &value, version.size);
}

// The defaults into the caller's prefix (out != NULL: the caller checks). On failure nothing
// is written.
template <class T>
struct_check try_fill_default(T* out, size_t struct_size, const char* name, void (*defaults)(T*)) {
  struct_check check;
  const struct_version* version = find_struct_version<T>(struct_size, name, &check);
  if (version == nullptr) return check;
  T value;
  defaults(&value);
  write_struct_prefix(out, value, *version);
  return check;
}

// Throwing wrappers for the library's entry points (inside sr::guard).

template <class T>
const struct_version& check_struct_size(size_t struct_size, const char* name) {
  struct_check check;
  const struct_version* version = find_struct_version<T>(struct_size, name, &check);
  if (version == nullptr) fail(check.status, "%s", check.message);
  return *version;
}

template <class T>
T read_struct(const T* in, const char* name, void (*defaults)(T*)) {
  T value;
  struct_check check = try_read_struct(in, name, defaults, &value);
  if (check.status != SR_OK) fail(check.status, "%s", check.message);
  return value;
}

template <class T>
void fill_default(T* out, size_t struct_size, const char* name, void (*defaults)(T*)) {
  require_not_null(out, name);
  struct_check check = try_fill_default(out, struct_size, name, defaults);
  if (check.status != SR_OK) fail(check.status, "%s", check.message);
}

}  // namespace sr
