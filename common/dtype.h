// Element types shared by the safetensors and .npy codecs and the wire.
//
// Torch-free on purpose: file formats and the protocol codec use these
// without pulling LibTorch into their headers.
#ifndef MKD_COMMON_DTYPE_H_
#define MKD_COMMON_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mkd {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// Bytes per element.
size_t DTypeSize(DType dtype);

// The safetensors spelling ("F32", "BF16", "BOOL", ...).
absl::string_view DTypeName(DType dtype);

// Parses a safetensors dtype name; kInvalidArgument names unknown ones.
absl::StatusOr<DType> ParseDTypeName(absl::string_view name);

// The float types configs name: "fp32", "bf16", "fp16" ("f32" and "f16"
// too); kInvalidArgument "must be fp32, bf16 or fp16, got '<name>'". Parsed
// once, when a config is loaded; code then switches on the DType.
absl::StatusOr<DType> ParseFloatTypeName(absl::string_view name);
// "fp32", "bf16" or "fp16" (other types: their safetensors name).
absl::string_view FloatTypeName(DType dtype);

// Product of `shape`; kInvalidArgument on a negative dimension or on
// overflow past 2^62 elements (so callers can multiply by an element size).
absl::StatusOr<int64_t> NumElements(const std::vector<int64_t>& shape);

// "[2, 3, 4]" for messages.
std::string ShapeString(const std::vector<int64_t>& shape);

// A dense, C-ordered, little-endian host array: what the file codecs read
// and write. `data.size()` is always NumElements(shape) * DTypeSize(dtype).
struct HostArray {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string data;
};

}  // namespace mkd

#endif  // MKD_COMMON_DTYPE_H_
