#include "common/tensor_util.h"

#include <c10/util/Exception.h>
#include <torch/types.h>

#include <cstring>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace mkd {
namespace {

struct DTypePair {
  DType ours;
  torch::Dtype theirs;
};

constexpr DTypePair kPairs[] = {
    {DType::kF64, torch::kFloat64}, {DType::kF32, torch::kFloat32},
    {DType::kF16, torch::kFloat16}, {DType::kBF16, torch::kBFloat16},
    {DType::kI64, torch::kInt64},   {DType::kI32, torch::kInt32},
    {DType::kI16, torch::kInt16},   {DType::kI8, torch::kInt8},
    {DType::kU8, torch::kUInt8},    {DType::kBool, torch::kBool},
};

}  // namespace

torch::Dtype TorchDtype(DType dtype) {
  for (const auto& p : kPairs) {
    if (p.ours == dtype) return p.theirs;
  }
  return torch::kFloat32;  // Unreachable: every DType has its pair.
}

absl::StatusOr<DType> FromTorchDtype(torch::Dtype dtype) {
  for (const auto& p : kPairs) {
    if (p.theirs == dtype) return p.ours;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no file dtype for torch dtype ", c10::toString(dtype)));
}

absl::StatusOr<torch::Tensor> ToTensor(const HostArray& array) {
  const torch::Dtype dtype = TorchDtype(array.dtype);
  MKD_ASSIGN_OR_RETURN(int64_t count, NumElements(array.shape));
  if (static_cast<size_t>(count) * DTypeSize(array.dtype) != array.data.size()) {
    return absl::InvalidArgumentError(absl::StrCat("array data is ", array.data.size(),
                                                   " bytes, not what ", ShapeString(array.shape),
                                                   " needs"));
  }
  torch::Tensor t = torch::empty(array.shape, torch::TensorOptions().dtype(dtype));
  if (!array.data.empty()) std::memcpy(t.data_ptr(), array.data.data(), array.data.size());
  return t;
}

absl::StatusOr<HostArray> FromTensor(const torch::Tensor& tensor) {
  HostArray array;
  MKD_ASSIGN_OR_RETURN(array.dtype, FromTorchDtype(tensor.scalar_type()));
  torch::Tensor host = tensor.detach().to(torch::kCPU).contiguous();
  array.shape.assign(host.sizes().begin(), host.sizes().end());
  array.data.assign(static_cast<const char*>(host.data_ptr()),
                    static_cast<size_t>(host.numel()) * host.element_size());
  return array;
}

absl::Status CheckShape(const torch::Tensor& tensor, const std::vector<int64_t>& shape,
                        absl::string_view what) {
  bool ok = tensor.dim() == static_cast<int64_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) {
    ok = shape[i] < 0 || tensor.size(static_cast<int64_t>(i)) == shape[i];
  }
  if (ok) return absl::OkStatus();
  std::vector<int64_t> have(tensor.sizes().begin(), tensor.sizes().end());
  std::string want = ShapeString(shape);
  // Render wildcards readably.
  size_t pos;
  while ((pos = want.find("-1")) != std::string::npos) want.replace(pos, 2, "*");
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must have shape ", want, " but has ", ShapeString(have)));
}

absl::Status TorchErrorToStatus(absl::string_view context, const std::exception& e) {
  std::string msg = e.what();
  // c10::Error messages carry a C++ backtrace after the first line.
  if (size_t nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr ||
      dynamic_cast<const std::bad_alloc*>(&e) != nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(context, ": out of memory: ", msg));
  }
  // LibTorch's typed argument checks (TORCH_CHECK_INDEX / _VALUE / _TYPE)
  // and the standard library's are the caller's mistake, not ours. Plain
  // TORCH_CHECK failures (shape mismatches among them) carry no type to
  // tell them apart, so they stay kInternal: inputs are validated before
  // they reach LibTorch, and what slips past is our bug.
  if (dynamic_cast<const c10::IndexError*>(&e) != nullptr ||
      dynamic_cast<const c10::ValueError*>(&e) != nullptr ||
      dynamic_cast<const c10::TypeError*>(&e) != nullptr ||
      dynamic_cast<const std::invalid_argument*>(&e) != nullptr ||
      dynamic_cast<const std::out_of_range*>(&e) != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": ", msg));
  }
  return absl::InternalError(absl::StrCat(context, ": ", msg));
}

}  // namespace mkd
