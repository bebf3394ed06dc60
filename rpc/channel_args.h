// Channel settings the pool's clients share.
#ifndef MKD_RPC_CHANNEL_ARGS_H_
#define MKD_RPC_CHANNEL_ARGS_H_

#include <grpcpp/support/channel_arguments.h>

namespace mkd::rpc {

// A restarted peer is found again within a second (gRPC's default
// reconnect backoff grows to 2 minutes).
void SetQuickReconnect(grpc::ChannelArguments* args);

// For streams of large messages (a student's to a teacher): quick
// reconnect; a 64 MiB receive limit; an HTTP/2 window that holds a
// micro-batch from the start; keepalive pings, so a peer that vanished
// without closing its socket (a dead machine) is noticed within 15 s even
// when nothing is being sent.
grpc::ChannelArguments BulkStreamArguments();

}  // namespace mkd::rpc

#endif  // MKD_RPC_CHANNEL_ARGS_H_
