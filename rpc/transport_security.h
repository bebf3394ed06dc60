// Transport security for every gRPC server and client of the pool: mutual
// TLS from PEM files that gRPC re-reads while running, so rotated
// certificates are used without a restart; plaintext only when a config
// asks for it by name (`tls.insecure: true`), with a warning at start.
//
// One `tls` block per process serves both sides: a teacher presents the same
// certificate to its students (server) and to the coordinator (client).
// Every certificate is checked against `ca`, and a server asks every client
// for one (mutual TLS) unless `require_client_cert` is false.
#ifndef MKD_RPC_TRANSPORT_SECURITY_H_
#define MKD_RPC_TRANSPORT_SECURITY_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls_options.h"
#include "rpc/pool_auth.h"

namespace grpc {
class Channel;
class ChannelArguments;
class ServerCredentials;
}  // namespace grpc

namespace mkd::rpc {

// Credentials for a server (validated first); an invalid `o` is an error,
// never a silent fallback to plaintext.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const TlsOptions& o);

// A channel to `target` with `o`'s credentials and `args` (may be null).
// Under TLS with `peer_role` set, the server's certificate must also carry
// that pool role (a URI SAN spiffe://<td>/maskedkd/<role>/<name>,
// rpc/pool_auth.h): a student dials only teachers.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const std::string& target, const TlsOptions& o, const grpc::ChannelArguments* args,
    std::optional<Role> peer_role = std::nullopt);

}  // namespace mkd::rpc

#endif  // MKD_RPC_TRANSPORT_SECURITY_H_
