// Status conversion between Abseil (what our code returns) and gRPC (what
// goes on the wire). Both follow google.rpc.Code, so the numbers agree and
// a code survives the trip both ways.
#ifndef MKD_RPC_STATUS_H_
#define MKD_RPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mkd::rpc {

grpc::Status ToGrpcStatus(const absl::Status& s);

// `context` ("coordinator 10.0.0.1:7000", say), when given, prefixes the
// message: "<context>: <message>".
absl::Status FromGrpcStatus(const grpc::Status& s, absl::string_view context = "");

// A code that travelled inside a message (DistillResponse.code), with its
// message; OK for 0.
absl::Status StatusFromCode(int code, absl::string_view message);

}  // namespace mkd::rpc

#endif  // MKD_RPC_STATUS_H_
