// Conversions between HostArray (the file codecs' type) and torch::Tensor,
// plus argument-checking helpers that return absl::Status instead of
// throwing, for use at input boundaries.
#ifndef MKD_COMMON_TENSOR_UTIL_H_
#define MKD_COMMON_TENSOR_UTIL_H_

#include <torch/types.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"

namespace mkd {

// The LibTorch dtype of each DType, and back (kInvalidArgument for torch
// dtypes DType does not have).
torch::Dtype TorchDtype(DType dtype);
absl::StatusOr<DType> FromTorchDtype(torch::Dtype dtype);

// Copies `array` into a new CPU tensor of the same dtype and shape.
absl::StatusOr<torch::Tensor> ToTensor(const HostArray& array);

// Copies `tensor` (any device, any strides) into a C-ordered HostArray.
absl::StatusOr<HostArray> FromTensor(const torch::Tensor& tensor);

// kInvalidArgument "<what> must have shape [..] but has [..]" unless
// `tensor` has exactly `shape`; a -1 entry matches any size.
absl::Status CheckShape(const torch::Tensor& tensor, const std::vector<int64_t>& shape,
                        absl::string_view what);

// Runs `fn` (which may throw c10::Error) and converts a throw into a status:
// out-of-memory -> kResourceExhausted; LibTorch's index/value/type errors
// and std::invalid_argument / out_of_range -> kInvalidArgument; else
// kInternal; prefixed by `context`.
// One of the few named boundaries where LibTorch exceptions are caught.
template <typename Fn>
absl::Status CatchTorch(absl::string_view context, Fn&& fn);

absl::Status TorchErrorToStatus(absl::string_view context, const std::exception& e);

template <typename Fn>
absl::Status CatchTorch(absl::string_view context, Fn&& fn) {
  try {
    fn();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return TorchErrorToStatus(context, e);
  }
}

}  // namespace mkd

#endif  // MKD_COMMON_TENSOR_UTIL_H_
