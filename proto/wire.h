// Torch-free helpers for the wire protocol: dtype names and sizes, the
// byte sizes a DistillRequest's fields must have, and teacher state names. The payloads are
// little-endian (every supported host is).
#ifndef MKD_PROTO_WIRE_H_
#define MKD_PROTO_WIRE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"
#include "maskedkd/v1/coordinator.pb.h"
#include "maskedkd/v1/teacher.pb.h"

namespace mkd::proto {

// The float types travel as the wire's DType; the code uses mkd::DType
// (common/dtype.h), the one float-type enum. These two convert, and every
// other question about a wire dtype (its size, name, torch type) is asked
// of the mkd::DType FromWireDType gives.
//
// The wire's enum for a float type (ParseFloatTypeName's); DTYPE_F32 for
// anything else.
maskedkd::v1::DType WireDType(mkd::DType dtype);
// kF32, kF16 or kBF16; nullopt for DTYPE_UNSPECIFIED or an unknown value.
std::optional<mkd::DType> FromWireDType(int dtype);

// Bytes per element; 0 for DTYPE_UNSPECIFIED or unknown values.
int64_t WireDTypeSize(int dtype);
// "fp32", "fp16", "bf16" (FloatTypeName); "unspecified (N)" otherwise.
std::string WireDTypeName(int dtype);

// "serving", "draining", "gone"; "unknown" otherwise. The CLI's tables and
// the coordinator's metric labels both say it this way.
const char* TeacherStateName(int state);

}  // namespace mkd::proto

#endif  // MKD_PROTO_WIRE_H_
