// A teacher's membership in a coordinator's pool: registers, then
// heartbeats its load every interval the coordinator asks for (the loop is
// rpc::HeartbeatLoop, shared with jobs); each heartbeat carries the whole
// TeacherInfo, so a restarted coordinator relearns the teacher. When a
// heartbeat answers DRAINING, `on_drain` runs once (mkd-teacher then stops
// taking work, finishes what it accepted and exits). An unreachable
// coordinator, or one that refuses the teacher's credentials, is retried
// forever: serving never depends on it.
//
// Thread-safe; owns the loop's thread.
#ifndef MKD_TEACHER_SERVER_POOL_MEMBER_H_
#define MKD_TEACHER_SERVER_POOL_MEMBER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/mutex.h"
#include "maskedkd/v1/coordinator.grpc.pb.h"
#include "rpc/heartbeat_loop.h"

namespace mkd::teacher {

class PoolMember {
 public:
  // `load` is called on the member's thread before each heartbeat;
  // `token` before each call, for its x-mkd-token ("": none).
  // `channel` leads to `coordinator` (named in logs), with its credentials.
  PoolMember(std::string coordinator, std::shared_ptr<grpc::Channel> channel,
             maskedkd::v1::TeacherInfo info, std::function<maskedkd::v1::TeacherLoad()> load,
             std::function<void()> on_drain, std::function<std::string()> token);
  ~PoolMember();  // Stops the loop (no deregistration: the lease ends it).

  // True once a heartbeat has been answered (tests wait on it).
  bool joined();

 private:
  // One call of the loop: RegisterTeacher until it succeeds, then
  // TeacherHeartbeat.
  grpc::Status Beat(grpc::ClientContext* ctx, absl::Duration* interval);

  // Constant after construction.
  const std::string coordinator_;
  const maskedkd::v1::TeacherInfo info_;
  const std::function<maskedkd::v1::TeacherLoad()> load_;
  const std::function<void()> on_drain_;
  const std::unique_ptr<maskedkd::v1::CoordinatorService::Stub> stub_;

  // Used by the loop's thread only.
  bool registered_ = false;
  bool drained_ = false;

  Mutex mu_;
  bool joined_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<rpc::HeartbeatLoop> loop_;  // Last: stopped first.
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_POOL_MEMBER_H_
