// The pool's gRPC servers (the coordinator, the teachers), built one way:
// credentials from the `tls` block (mutual TLS, or plaintext by name), the
// standard health service (grpc.health.v1, for Kubernetes probes and
// `mkd health`), and a port that must be free: SO_REUSEPORT is off, so a
// second server on a taken port fails instead of silently sharing its
// connections.
#ifndef MKD_RPC_SERVER_H_
#define MKD_RPC_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tls_options.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace mkd::rpc {

struct ServerOptions {
  std::string listen;  // host:port; port 0 picks a free one.
  TlsOptions tls;
  std::vector<grpc::Service*> services;  // Not owned; they outlive the server.
  // For servers of large messages (a teacher's micro-batches): the largest
  // message either way, and an HTTP/2 window that holds one from the start
  // (gRPC's starts at 64 KiB and grows by probing). 0: gRPC's defaults.
  int64_t max_message_bytes = 0;
  int64_t stream_window_bytes = 0;
};

struct StartedServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;  // The one bound (listen's, or the one picked for 0).
};

// kInvalidArgument for a bad tls block; kUnavailable, naming the config
// key 'listen', when the address cannot be bound.
absl::StatusOr<StartedServer> StartServer(const ServerOptions& options);

}  // namespace mkd::rpc

#endif  // MKD_RPC_SERVER_H_
