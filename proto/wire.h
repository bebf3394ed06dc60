// Torch-free helpers for the wire protocol: dtype names and sizes, the
// byte sizes a DistillRequest's fields must have, and teacher state names. The payloads are
// little-endian (every supported host is).
#ifndef MKD_PROTO_WIRE_H_
#define MKD_PROTO_WIRE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"
#include "maskedkd/v1/coordinator.pb.h"
#include "maskedkd/v1/teacher.pb.h"

namespace mkd::proto {

// Bytes per element; 0 for DTYPE_UNSPECIFIED or unknown values.
int64_t WireDTypeSize(int dtype);

// "f32", "f16", "bf16"; "unspecified" otherwise.
std::string WireDTypeName(int dtype);

// "serving", "draining", "gone"; "unknown" otherwise. The CLI's tables and
// the coordinator's metric labels both say it this way.
const char* TeacherStateName(int state);

// Parses "fp32"/"f32", "fp16"/"f16", "bf16"; kInvalidArgument otherwise.
absl::StatusOr<maskedkd::v1::DType> ParseWireDType(absl::string_view name);
// The wire's enum for a float type (ParseFloatTypeName's); DTYPE_F32 for
// anything else.
maskedkd::v1::DType WireDType(mkd::DType dtype);

}  // namespace mkd::proto

#endif  // MKD_PROTO_WIRE_H_
