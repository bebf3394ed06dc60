#include "rpc/server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "rpc/transport_security.h"

namespace mkd::rpc {

absl::StatusOr<StartedServer> StartServer(const ServerOptions& options) {
  MKD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                       MakeServerCredentials(options.tls));
  grpc::EnableDefaultHealthCheckService(true);
  StartedServer started;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &started.port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (options.max_message_bytes > 0) {
    builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
    builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  }
  if (options.stream_window_bytes > 0) {
    builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                               static_cast<int>(options.stream_window_bytes));
  }
  for (grpc::Service* service : options.services) builder.RegisterService(service);
  started.server = builder.BuildAndStart();
  if (started.server == nullptr || started.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on '", options.listen,
                                               "' (config key 'listen'); is the port in use?"));
  }
  return started;
}

}  // namespace mkd::rpc
