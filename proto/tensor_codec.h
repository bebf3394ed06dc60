// Tensors <-> the raw little-endian bytes in TeacherService messages.
// Decoding checks sizes; the element values are trusted (any bit pattern is
// some float).
#ifndef MKD_PROTO_TENSOR_CODEC_H_
#define MKD_PROTO_TENSOR_CODEC_H_

#include <torch/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "maskedkd/v1/teacher.pb.h"

namespace mkd::proto {

// `t` (any floating dtype, any device) converted to `dtype` and laid out
// contiguously on the CPU, as bytes.
std::string EncodeFloats(const torch::Tensor& t, maskedkd::v1::DType dtype);

// Bytes holding `shape` elements of `dtype` as a float32 CPU tensor.
// kInvalidArgument naming `field` when the byte count does not match.
absl::StatusOr<torch::Tensor> DecodeFloats(absl::string_view bytes, int dtype,
                                           const std::vector<int64_t>& shape,
                                           absl::string_view field);

// As DecodeFloats, but the CPU tensor keeps the wire's dtype (f32, f16 or
// bf16): the teacher server converts on its device, after the copy.
absl::StatusOr<torch::Tensor> DecodeWireFloats(absl::string_view bytes, int dtype,
                                               const std::vector<int64_t>& shape,
                                               absl::string_view field);

// Into `dst` (a contiguous CPU tensor of the wire's dtype, already of the
// shape): one copy, no allocation. kInvalidArgument naming `field` when
// the byte count or dtype does not match.
absl::Status DecodeWireFloatsInto(absl::string_view bytes, int dtype, const torch::Tensor& dst,
                                  absl::string_view field);

// The LibTorch dtype of a wire dtype (f32 for unknown values).
torch::Dtype WireTorchDtype(int dtype);

// Kept indices [b, k] (any integer dtype) as int32 bytes, and back to int64
// (sizes checked; ranges are the validator's job).
std::string EncodeIndices(const torch::Tensor& idx);
absl::StatusOr<torch::Tensor> DecodeIndices(absl::string_view bytes, int64_t b, int64_t k);

}  // namespace mkd::proto

#endif  // MKD_PROTO_TENSOR_CODEC_H_
