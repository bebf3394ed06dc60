// A teacher's membership in a coordinator's pool: registers, then
// heartbeats its load every interval the coordinator asks for, re-registering
// whenever the coordinator seems to have forgotten it (a restart). When a
// heartbeat answers DRAINING, `on_drain` runs once (mkd-teacher then stops
// taking work, finishes what it accepted and exits). An unreachable
// coordinator is retried forever: serving never depends on it.
//
// Thread-safe; owns one thread.
#ifndef MKD_TEACHER_SERVER_POOL_MEMBER_H_
#define MKD_TEACHER_SERVER_POOL_MEMBER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "common/mutex.h"
#include "maskedkd/v1/coordinator.grpc.pb.h"

namespace mkd::teacher {

class PoolMember {
 public:
  // `load` is called on the member's thread before each heartbeat;
  // `token` before each call, for its x-mkd-token ("": none).
  // `channel` leads to `coordinator` (named in logs), with its credentials.
  PoolMember(std::string coordinator, std::shared_ptr<grpc::Channel> channel,
             maskedkd::v1::TeacherInfo info, std::function<maskedkd::v1::TeacherLoad()> load,
             std::function<void()> on_drain, std::function<std::string()> token);
  ~PoolMember();  // Stops the thread (no deregistration: the lease ends it).

  // True once a heartbeat has been answered (tests wait on it).
  bool joined();

 private:
  void Loop();

  // Constant after construction.
  const std::string coordinator_;
  const std::shared_ptr<grpc::Channel> channel_;
  const maskedkd::v1::TeacherInfo info_;
  const std::function<maskedkd::v1::TeacherLoad()> load_;
  const std::function<void()> on_drain_;
  const std::function<std::string()> token_;

  Mutex mu_;
  CondVar wake_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool joined_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_POOL_MEMBER_H_
