#include "teacher_client/job_membership.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/pool_auth.h"

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
  heartbeat_ = std::thread([this] { HeartbeatLoop(); });
  watch_thread_ = std::thread([this] { WatchLoop(); });
}

JobMembership::~JobMembership() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    if (watch_ != nullptr) watch_->TryCancel();
  }
  wake_.SignalAll();
  heartbeat_.join();
  watch_thread_.join();
}

bool JobMembership::Sleep(absl::Duration d) {
  const absl::Time deadline = absl::Now() + d;
  MutexLock lock(&mu_);
  while (!stop_ && wake_.WaitWithDeadline(&mu_, deadline)) {
  }
  return !stop_;
}

bool JobMembership::Refused(const grpc::Status& st) {
  const grpc::StatusCode code = st.error_code();
  if (code != grpc::StatusCode::INVALID_ARGUMENT && code != grpc::StatusCode::UNAUTHENTICATED &&
      code != grpc::StatusCode::PERMISSION_DENIED) {
    return false;
  }
  {
    MutexLock lock(&mu_);
    stop_ = true;
    if (watch_ != nullptr) watch_->TryCancel();
    if (refused_) return true;
    refused_ = true;
  }
  wake_.SignalAll();
  on_refused_(absl::Status(static_cast<absl::StatusCode>(code),
                           absl::StrCat("coordinator ", coordinator_, " refused job ",
                                        info_.job_id(), ": ", st.error_message())));
  return true;
}

void JobMembership::HeartbeatLoop() {
  absl::Duration interval = absl::Seconds(1);
  bool registered = false, warned = false;
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    AddTokenMetadata(&ctx, job_token_);
    grpc::Status st;
    if (!registered) {
      v1::RegisterJobRequest req;
      *req.mutable_info() = info_;
      v1::RegisterJobResponse resp;
      st = stub_->RegisterJob(&ctx, req, &resp);
      if (st.ok()) {
        registered = true;
        if (resp.heartbeat_s() > 0) interval = absl::Seconds(resp.heartbeat_s());
      }
    } else {
      v1::JobHeartbeatRequest req;
      *req.mutable_info() = info_;
      *req.mutable_timings() = take_timings_();
      v1::JobHeartbeatResponse resp;
      st = stub_->JobHeartbeat(&ctx, req, &resp);
    }
    if (Refused(st)) return;  // Ours to fix: retrying would send the same.
    if (!st.ok() && !warned) {
      std::fprintf(stderr, "job %s: coordinator %s: %s; retrying (training goes on)\n",
                   info_.job_id().c_str(), coordinator_.c_str(), st.error_message().c_str());
      warned = true;
    }
    if (st.ok()) warned = false;
  } while (Sleep(registered ? interval : absl::Milliseconds(200)));
}

void JobMembership::WatchLoop() {
  absl::Duration backoff = absl::Milliseconds(100);
  while (true) {
    grpc::ClientContext ctx;
    AddTokenMetadata(&ctx, job_token_);
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
      backoff = absl::Milliseconds(100);
      on_assignment_(a);
    }
    const grpc::Status st = reader->Finish();
    {
      // Before anything can return: `ctx` dies with this iteration, and the
      // destructor cancels whatever watch_ points to.
      MutexLock lock(&mu_);
      watch_ = nullptr;
    }
    if (Refused(st)) return;
    if (!Sleep(backoff)) return;
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
}

}  // namespace mkd::client
