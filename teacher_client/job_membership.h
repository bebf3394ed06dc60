// A training job's membership in a coordinator's pool (the student side):
// registers the job, heartbeats its timings (rpc::HeartbeatLoop, shared
// with teachers), and watches its assignment. Both survive a coordinator
// restart on their own: heartbeats carry the job's whole description, and
// the watch stream is reopened with backoff.
// Serving never depends on the coordinator: while it is away, the job
// keeps its teachers.
//
// A refusal that retrying cannot mend (INVALID_ARGUMENT, UNAUTHENTICATED,
// PERMISSION_DENIED: a bad description, a missing, wrong or expired token)
// stops both loops and is reported once through `on_refused`.
//
// Thread-safe; owns two threads (the heartbeat loop's, the watch's).
// Callbacks run on them, without locks of this class held.
#ifndef MKD_TEACHER_CLIENT_JOB_MEMBERSHIP_H_
#define MKD_TEACHER_CLIENT_JOB_MEMBERSHIP_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "common/thread.h"
#include "maskedkd/v1/coordinator.grpc.pb.h"
#include "rpc/heartbeat_loop.h"

namespace mkd::client {

class JobMembership {
 public:
  // `take_timings` is called before each heartbeat (the means since the
  // last one); `on_assignment` with every assignment the coordinator sends;
  // `on_refused` at most once, with the coordinator's code and message.
  // `channel` leads to `coordinator` (named in logs), with its credentials.
  JobMembership(std::string coordinator, std::shared_ptr<grpc::Channel> channel,
                maskedkd::v1::JobInfo info, std::function<maskedkd::v1::JobTimings()> take_timings,
                std::function<void(const maskedkd::v1::Assignment&)> on_assignment,
                std::function<void(const absl::Status&)> on_refused, std::string job_token = "");
  ~JobMembership();  // Stops both threads (the lease ends the membership).

 private:
  // One call of the heartbeat loop: RegisterJob until it succeeds, then
  // JobHeartbeat.
  grpc::Status Beat(grpc::ClientContext* ctx, absl::Duration* interval);
  void WatchLoop();
  // Stops both loops and reports `why` (once, whichever loop saw a refusal
  // first). The heartbeat loop stops itself on a refusal of its own.
  void Refuse(const absl::Status& why, bool stop_heartbeat);

  // Constant after construction.
  const std::string coordinator_;
  const maskedkd::v1::JobInfo info_;
  const std::string job_token_;  // Sent on every call ("": none).
  const std::function<maskedkd::v1::JobTimings()> take_timings_;
  const std::function<void(const maskedkd::v1::Assignment&)> on_assignment_;
  const std::function<void(const absl::Status&)> on_refused_;
  const std::unique_ptr<maskedkd::v1::CoordinatorService::Stub> stub_;

  bool registered_ = false;  // Used by the heartbeat loop's thread only.

  Mutex mu_;
  CondVar wake_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool refused_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* watch_ ABSL_GUARDED_BY(mu_) = nullptr;  // The open watch, to cancel.
  std::unique_ptr<rpc::HeartbeatLoop> heartbeat_;
  Thread watch_thread_;
};

}  // namespace mkd::client

#endif  // MKD_TEACHER_CLIENT_JOB_MEMBERSHIP_H_
