// A pool member's loop against the coordinator, the same for teachers
// (teacher_server/pool_member.h) and jobs (teacher_client/job_membership.h):
// one call per interval the coordinator asks for (the member's first call
// registers it; later ones heartbeat, carrying its whole description, so a
// restarted coordinator relearns it), retries with backoff after a
// failure, one warning per outage, and, where the member asks for it, a
// stop for good on a refusal no retry can mend (rpc::IsRefusal), reported
// once. Serving and training never wait on it.
//
// Thread-safe; owns one thread, which runs the call and the callbacks
// without locks of this class held.
#ifndef MKD_RPC_HEARTBEAT_LOOP_H_
#define MKD_RPC_HEARTBEAT_LOOP_H_

#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "common/thread.h"

namespace mkd::rpc {

class HeartbeatLoop {
 public:
  struct Options {
    std::string member;       // Names the member in logs: "mkd-teacher", "job j1".
    std::string coordinator;  // Its address, in logs.
    std::string while_away;   // What goes on meanwhile, in logs: "still serving".
    // The token each call carries (AddTokenMetadata; "": none), asked for
    // before each call, so a rotated token file is picked up.
    std::function<std::string()> token;
    // Set: a refusal stops the loop and is reported here, once, as
    // "coordinator <address> refused <member>: <message>" (jobs). Unset:
    // refusals are retried like any failure (a teacher keeps serving while
    // an operator fixes its credentials). Also told if the loop's thread
    // dies of a bug, with that thread's status.
    std::function<void(const absl::Status&)> on_refused;
    // The first wait after a failure; it doubles while failures last, up
    // to the interval.
    absl::Duration retry = absl::Milliseconds(200);
  };
  // One call, on `ctx` (deadline and token set). On success it may set
  // `*interval` to the coordinator's heartbeat period (the first is 1 s).
  using Call = std::function<grpc::Status(grpc::ClientContext* ctx, absl::Duration* interval)>;

  HeartbeatLoop(Options options, Call call);  // Starts calling.
  ~HeartbeatLoop();                           // Stop(), then waits for the thread.
  HeartbeatLoop(const HeartbeatLoop&) = delete;
  HeartbeatLoop& operator=(const HeartbeatLoop&) = delete;

  // Ends the loop before its next call (from any thread, the loop's own
  // callbacks included).
  void Stop();

 private:
  void Run();

  // Constant after construction.
  const Options options_;
  const Call call_;

  Mutex mu_;
  CondVar wake_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  Thread thread_;
};

}  // namespace mkd::rpc

#endif  // MKD_RPC_HEARTBEAT_LOOP_H_
