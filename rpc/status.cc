#include "rpc/status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace mkd::rpc {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(s.error_code());
  if (context.empty()) return absl::Status(code, s.error_message());
  return absl::Status(code, absl::StrCat(context, ": ", s.error_message()));
}

absl::Status StatusFromCode(int code, absl::string_view message) {
  if (code == 0) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

}  // namespace mkd::rpc
