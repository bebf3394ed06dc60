// A training job's membership in a coordinator's pool (the student side):
// registers the job, heartbeats its timings, and watches its assignment.
// Both survive a coordinator restart on their own: heartbeats carry the
// job's whole description, and the watch stream is reopened with backoff.
// Serving never depends on the coordinator: while it is away, the job
// keeps its teachers.
//
// A refusal that retrying cannot mend (INVALID_ARGUMENT, UNAUTHENTICATED,
// PERMISSION_DENIED: a bad description, a missing, wrong or expired token)
// stops both loops and is reported once through `on_refused`.
//
// Thread-safe; owns two threads. Callbacks run on them, without locks of
// this class held.
#ifndef MKD_TEACHER_CLIENT_JOB_MEMBERSHIP_H_
#define MKD_TEACHER_CLIENT_JOB_MEMBERSHIP_H_

#include <functional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "maskedkd/v1/coordinator.grpc.pb.h"

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
  void HeartbeatLoop();
  void WatchLoop();
  // Waits `d` or until stopped; false when stopped.
  bool Sleep(absl::Duration d);
  // True when `st` is a refusal retrying cannot mend: then stops both loops
  // and reports it (once, whichever loop saw it first).
  bool Refused(const grpc::Status& st);

  // Constant after construction.
  const std::string coordinator_;
  const maskedkd::v1::JobInfo info_;
  const std::string job_token_;  // Sent as x-mkd-job-token on every call ("": none).
  const std::function<maskedkd::v1::JobTimings()> take_timings_;
  const std::function<void(const maskedkd::v1::Assignment&)> on_assignment_;
  const std::function<void(const absl::Status&)> on_refused_;
  const std::unique_ptr<maskedkd::v1::CoordinatorService::Stub> stub_;

  Mutex mu_;
  CondVar wake_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool refused_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* watch_ ABSL_GUARDED_BY(mu_) = nullptr;  // The open watch, to cancel.
  std::thread heartbeat_;
  std::thread watch_thread_;
};

}  // namespace mkd::client

#endif  // MKD_TEACHER_CLIENT_JOB_MEMBERSHIP_H_
