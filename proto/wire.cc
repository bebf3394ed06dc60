#include "proto/wire.h"

#include "absl/strings/str_cat.h"

namespace mkd::proto {

using maskedkd::v1::DType;

int64_t WireDTypeSize(int dtype) {
  switch (dtype) {
    case maskedkd::v1::DTYPE_F32:
      return 4;
    case maskedkd::v1::DTYPE_F16:
    case maskedkd::v1::DTYPE_BF16:
      return 2;
    default:
      return 0;
  }
}

const char* TeacherStateName(int state) {
  switch (state) {
    case maskedkd::v1::TEACHER_STATE_SERVING:
      return "serving";
    case maskedkd::v1::TEACHER_STATE_DRAINING:
      return "draining";
    case maskedkd::v1::TEACHER_STATE_GONE:
      return "gone";
    default:
      return "unknown";
  }
}

std::string WireDTypeName(int dtype) {
  switch (dtype) {
    case maskedkd::v1::DTYPE_F32:
      return "f32";
    case maskedkd::v1::DTYPE_F16:
      return "f16";
    case maskedkd::v1::DTYPE_BF16:
      return "bf16";
    default:
      return absl::StrCat("unspecified (", dtype, ")");
  }
}

maskedkd::v1::DType WireDType(mkd::DType dtype) {
  if (dtype == mkd::DType::kF16) return maskedkd::v1::DTYPE_F16;
  if (dtype == mkd::DType::kBF16) return maskedkd::v1::DTYPE_BF16;
  return maskedkd::v1::DTYPE_F32;
}

absl::StatusOr<DType> ParseWireDType(absl::string_view name) {
  if (name == "fp32" || name == "f32") return maskedkd::v1::DTYPE_F32;
  if (name == "fp16" || name == "f16") return maskedkd::v1::DTYPE_F16;
  if (name == "bf16") return maskedkd::v1::DTYPE_BF16;
  return absl::InvalidArgumentError(
      absl::StrCat("wire dtype must be fp32, fp16 or bf16, got '", name, "'"));
}

}  // namespace mkd::proto
