#include "teacher_server/pool_member.h"

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"
#include "common/log.h"

namespace mkd::teacher {

namespace v1 = ::maskedkd::v1;

PoolMember::PoolMember(std::string coordinator, std::shared_ptr<grpc::Channel> channel,
                       v1::TeacherInfo info, std::function<v1::TeacherLoad()> load,
                       std::function<void()> on_drain, std::function<std::string()> token)
    : coordinator_(std::move(coordinator)),
      info_(std::move(info)),
      load_(std::move(load)),
      on_drain_(std::move(on_drain)),
      stub_(v1::CoordinatorService::NewStub(channel)) {
  rpc::HeartbeatLoop::Options o;
  o.member = "mkd-teacher";
  o.coordinator = coordinator_;
  o.while_away = "still serving";
  o.token = std::move(token);
  loop_ = std::make_unique<rpc::HeartbeatLoop>(
      o,
      [this](grpc::ClientContext* ctx, absl::Duration* interval) { return Beat(ctx, interval); });
}

PoolMember::~PoolMember() { loop_.reset(); }

bool PoolMember::joined() {
  MutexLock lock(&mu_);
  return joined_;
}

grpc::Status PoolMember::Beat(grpc::ClientContext* ctx, absl::Duration* interval) {
  if (!registered_) {
    v1::RegisterTeacherRequest req;
    *req.mutable_info() = info_;
    v1::RegisterTeacherResponse resp;
    grpc::Status st = stub_->RegisterTeacher(ctx, req, &resp);
    if (st.ok()) {
      registered_ = true;
      *interval = absl::Seconds(resp.heartbeat_s() > 0 ? resp.heartbeat_s() : 1);
      MKD_LOG(INFO) << "joined the pool at " << coordinator_ << " as " << info_.address()
                    << " (heartbeat " << absl::FormatDuration(*interval) << ")";
    }
    return st;
  }
  v1::TeacherHeartbeatRequest req;
  *req.mutable_info() = info_;  // Lets a restarted coordinator relearn us.
  *req.mutable_load() = load_();
  v1::TeacherHeartbeatResponse resp;
  grpc::Status st = stub_->TeacherHeartbeat(ctx, req, &resp);
  if (st.ok()) {
    MutexLock lock(&mu_);
    joined_ = true;
  }
  if (st.ok() && resp.state() == v1::TEACHER_STATE_DRAINING && !drained_) {
    drained_ = true;
    on_drain_();
  }
  return st;
}

}  // namespace mkd::teacher
