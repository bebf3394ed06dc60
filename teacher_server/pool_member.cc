#include "teacher_server/pool_member.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>

#include "proto/pool_auth.h"

namespace mkd::teacher {

namespace v1 = ::maskedkd::v1;

PoolMember::PoolMember(std::string coordinator, std::shared_ptr<grpc::Channel> channel,
                       v1::TeacherInfo info, std::function<v1::TeacherLoad()> load,
                       std::function<void()> on_drain, std::function<std::string()> token)
    : coordinator_(std::move(coordinator)),
      channel_(std::move(channel)),
      info_(std::move(info)),
      load_(std::move(load)),
      on_drain_(std::move(on_drain)),
      token_(std::move(token)),
      thread_([this] { Loop(); }) {}

PoolMember::~PoolMember() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.SignalAll();
  thread_.join();
}

bool PoolMember::joined() {
  MutexLock lock(&mu_);
  return joined_;
}

void PoolMember::Loop() {
  auto stub = v1::CoordinatorService::NewStub(channel_);
  absl::Duration interval = absl::Seconds(1);
  bool registered = false, drained = false, warned = false;
  while (true) {
    {
      MutexLock lock(&mu_);
      if (stop_) return;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + std::max(interval, absl::Seconds(1))));
    if (const std::string token = token_(); !token.empty()) ctx.AddMetadata(kTokenMetadata, token);
    grpc::Status st;
    if (!registered) {
      v1::RegisterTeacherRequest req;
      *req.mutable_info() = info_;
      v1::RegisterTeacherResponse resp;
      st = stub->RegisterTeacher(&ctx, req, &resp);
      if (st.ok()) {
        registered = true;
        interval = absl::Seconds(resp.heartbeat_s() > 0 ? resp.heartbeat_s() : 1);
        std::printf("mkd-teacher: joined the pool at %s as %s (heartbeat %s)\n",
                    coordinator_.c_str(), info_.address().c_str(),
                    absl::FormatDuration(interval).c_str());
        std::fflush(stdout);
      }
    } else {
      v1::TeacherHeartbeatRequest req;
      *req.mutable_info() = info_;  // Lets a restarted coordinator relearn us.
      *req.mutable_load() = load_();
      v1::TeacherHeartbeatResponse resp;
      st = stub->TeacherHeartbeat(&ctx, req, &resp);
      if (st.ok()) {
        MutexLock lock(&mu_);
        joined_ = true;
      }
      if (st.ok() && resp.state() == v1::TEACHER_STATE_DRAINING && !drained) {
        drained = true;
        on_drain_();
      }
    }
    if (!st.ok() && !warned) {
      std::fprintf(stderr, "mkd-teacher: coordinator %s: %s; retrying (still serving)\n",
                   coordinator_.c_str(), st.error_message().c_str());
      warned = true;
    } else if (st.ok()) {
      warned = false;
    }
    const absl::Time next = absl::Now() + (st.ok() ? interval : absl::Milliseconds(200));
    MutexLock lock(&mu_);
    while (!stop_ && wake_.WaitWithDeadline(&mu_, next)) {
    }
  }
}

}  // namespace mkd::teacher
