#include "proto/wire.h"

#include "absl/strings/str_cat.h"

namespace mkd::proto {

maskedkd::v1::DType WireDType(mkd::DType dtype) {
  if (dtype == mkd::DType::kF16) return maskedkd::v1::DTYPE_F16;
  if (dtype == mkd::DType::kBF16) return maskedkd::v1::DTYPE_BF16;
  return maskedkd::v1::DTYPE_F32;
}

std::optional<mkd::DType> FromWireDType(int dtype) {
  switch (dtype) {
    case maskedkd::v1::DTYPE_F32:
      return mkd::DType::kF32;
    case maskedkd::v1::DTYPE_F16:
      return mkd::DType::kF16;
    case maskedkd::v1::DTYPE_BF16:
      return mkd::DType::kBF16;
    default:
      return std::nullopt;
  }
}

int64_t WireDTypeSize(int dtype) {
  const std::optional<mkd::DType> d = FromWireDType(dtype);
  return d ? static_cast<int64_t>(DTypeSize(*d)) : 0;
}

std::string WireDTypeName(int dtype) {
  const std::optional<mkd::DType> d = FromWireDType(dtype);
  return d ? std::string(FloatTypeName(*d)) : absl::StrCat("unspecified (", dtype, ")");
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

}  // namespace mkd::proto
