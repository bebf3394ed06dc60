#include "teacher_client/job_membership.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "rpc/pool_auth.h"
#include "rpc/retry.h"
#include "rpc/status.h"

namespace mkd::client {

namespace v1 = ::maskedkd::v1;

JobMembership::JobMembership(std::string coordinator, std::shared_ptr<grpc::Channel> channel,
                             v1::JobInfo info, std::function<v1::JobTimings()> take_timings,
                             std::function<void(const v1::Assignment&)> on_assignment,
                             std::function<void(const absl::Status&)> on_refused,
                             std::string job_token)
    : coordinator_(std::move(coordinator)),
      info_(std::move(info)),
      job_token_(std::move(job_token)),
      take_timings_(std::move(take_timings)),
      on_assignment_(std::move(on_assignment)),
      on_refused_(std::move(on_refused)),
      stub_(v1::CoordinatorService::NewStub(channel)) {
  rpc::HeartbeatLoop::Options o;
  o.member = absl::StrCat("job ", info_.job_id());
  o.coordinator = coordinator_;
  o.while_away = "training goes on";
  o.token = [token = job_token_] { return token; };
  // The loop has stopped itself when it reports a refusal.
  o.on_refused = [this](const absl::Status& why) { Refuse(why, /*stop_heartbeat=*/false); };
  heartbeat_ = std::make_unique<rpc::HeartbeatLoop>(
      o,
      [this](grpc::ClientContext* ctx, absl::Duration* interval) { return Beat(ctx, interval); });
  watch_thread_ = Thread(
      "mkd-job-watch", [this] { WatchLoop(); },
      [this](const absl::Status& s) {
        // Without its watch the job hears of no new teacher: as
        // final as a refusal, and reported the same way.
        if (!s.ok()) Refuse(s, /*stop_heartbeat=*/true);
      });
}

JobMembership::~JobMembership() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    if (watch_ != nullptr) watch_->TryCancel();
  }
  wake_.SignalAll();
  watch_thread_.Join().IgnoreError();  // First: a refused watch stops the heartbeat loop.
  heartbeat_.reset();
}

void JobMembership::Refuse(const absl::Status& why, bool stop_heartbeat) {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    if (watch_ != nullptr) watch_->TryCancel();
    if (refused_) return;
    refused_ = true;
  }
  wake_.SignalAll();
  if (stop_heartbeat) heartbeat_->Stop();
  on_refused_(why);
}

grpc::Status JobMembership::Beat(grpc::ClientContext* ctx, absl::Duration* interval) {
  if (!registered_) {
    v1::RegisterJobRequest req;
    *req.mutable_info() = info_;
    v1::RegisterJobResponse resp;
    grpc::Status st = stub_->RegisterJob(ctx, req, &resp);
    if (st.ok()) {
      registered_ = true;
      if (resp.heartbeat_s() > 0) *interval = absl::Seconds(resp.heartbeat_s());
    }
    return st;
  }
  v1::JobHeartbeatRequest req;
  *req.mutable_info() = info_;
  *req.mutable_timings() = take_timings_();
  v1::JobHeartbeatResponse resp;
  return stub_->JobHeartbeat(ctx, req, &resp);
}

void JobMembership::WatchLoop() {
  rpc::Backoff backoff(absl::Milliseconds(100), absl::Seconds(1));
  while (true) {
    grpc::ClientContext ctx;
    rpc::AddTokenMetadata(&ctx, job_token_);
    {
      MutexLock lock(&mu_);
      if (stop_) return;
      watch_ = &ctx;
    }
    v1::WatchAssignmentRequest req;
    req.set_job_id(info_.job_id());
    auto reader = stub_->WatchAssignment(&ctx, req);
    v1::Assignment a;
    while (reader->Read(&a)) {
      backoff.Reset();
      on_assignment_(a);
    }
    const grpc::Status st = reader->Finish();
    {
      // Before anything can return: `ctx` dies with this iteration, and the
      // destructor cancels whatever watch_ points to.
      MutexLock lock(&mu_);
      watch_ = nullptr;
    }
    const absl::Status status = rpc::FromGrpcStatus(
        st, absl::StrCat("coordinator ", coordinator_, " refused job ", info_.job_id()));
    if (rpc::IsRefusal(status.code())) {
      Refuse(status, /*stop_heartbeat=*/true);  // Ours to fix: retrying would send the same.
      return;
    }
    const absl::Time retry_at = absl::Now() + backoff.Next();
    MutexLock lock(&mu_);
    while (!stop_ && wake_.WaitWithDeadline(&mu_, retry_at)) {
    }
    if (stop_) return;
  }
}

}  // namespace mkd::client
