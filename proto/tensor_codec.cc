#include "proto/tensor_codec.h"

#include <torch/types.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "proto/wire.h"

namespace mkd::proto {
torch::Dtype WireTorchDtype(int dtype) {
  return TorchDtype(FromWireDType(dtype).value_or(DType::kF32));
}

std::string EncodeFloats(const torch::Tensor& t, maskedkd::v1::DType dtype) {
  // Converted on the tensor's own device, then copied once, straight into
  // the string's buffer (a GPU tensor of a micro-batch is tens of MB).
  torch::Tensor c = t.detach().to(WireTorchDtype(dtype)).contiguous();
  std::string out(c.numel() * c.element_size(), '\0');
  torch::from_blob(out.data(), c.sizes(), torch::TensorOptions().dtype(c.scalar_type())).copy_(c);
  return out;
}

absl::StatusOr<torch::Tensor> DecodeFloats(absl::string_view bytes, int dtype,
                                           const std::vector<int64_t>& shape,
                                           absl::string_view field) {
  MKD_ASSIGN_OR_RETURN(torch::Tensor raw, DecodeWireFloats(bytes, dtype, shape, field));
  return raw.to(torch::kFloat32);
}

absl::StatusOr<torch::Tensor> DecodeWireFloats(absl::string_view bytes, int dtype,
                                               const std::vector<int64_t>& shape,
                                               absl::string_view field) {
  const int64_t size = WireDTypeSize(dtype);
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": dtype ", WireDTypeName(dtype), " is not fp32, fp16 or bf16"));
  }
  MKD_ASSIGN_OR_RETURN(int64_t n, NumElements(shape));
  if (static_cast<int64_t>(bytes.size()) != n * size) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", bytes.size(), " bytes, but ",
                                                   ShapeString(shape), " ", WireDTypeName(dtype),
                                                   " needs ", n * size));
  }
  torch::Tensor raw = torch::empty(shape, torch::TensorOptions().dtype(WireTorchDtype(dtype)));
  std::memcpy(raw.data_ptr(), bytes.data(), bytes.size());
  return raw;
}

absl::Status DecodeWireFloatsInto(absl::string_view bytes, int dtype, const torch::Tensor& dst,
                                  absl::string_view field) {
  if (WireDTypeSize(dtype) == 0 || dst.scalar_type() != WireTorchDtype(dtype) ||
      !dst.is_contiguous() || !dst.device().is_cpu()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": dtype ", WireDTypeName(dtype), " does not match its buffer"));
  }
  if (static_cast<int64_t>(bytes.size()) != static_cast<int64_t>(dst.nbytes())) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", bytes.size(), " bytes, but ",
                                                   ShapeString(dst.sizes().vec()), " ",
                                                   WireDTypeName(dtype), " needs ", dst.nbytes()));
  }
  std::memcpy(dst.data_ptr(), bytes.data(), bytes.size());
  return absl::OkStatus();
}

std::string EncodeIndices(const torch::Tensor& idx) {
  torch::Tensor c = idx.detach().to(torch::kCPU, torch::kInt32).contiguous();
  std::string out(c.numel() * 4, '\0');
  std::memcpy(out.data(), c.data_ptr(), out.size());
  return out;
}

absl::StatusOr<torch::Tensor> DecodeIndices(absl::string_view bytes, int64_t b, int64_t k) {
  if (static_cast<int64_t>(bytes.size()) != b * k * 4) {
    return absl::InvalidArgumentError(absl::StrCat("kept_indices: ", bytes.size(), " bytes, but [",
                                                   b, ", ", k, "] int32 needs ", b * k * 4));
  }
  torch::Tensor raw = torch::empty({b, k}, torch::kInt32);
  std::memcpy(raw.data_ptr(), bytes.data(), bytes.size());
  return raw.to(torch::kInt64);
}

}  // namespace mkd::proto
