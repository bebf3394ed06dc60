#include "teacher_server/distill_reactor.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "rpc/status.h"
#include "teacher_server/service.h"

namespace mkd::teacher {
namespace {

using maskedkd::v1::DistillRequest;
using maskedkd::v1::DistillResponse;

}  // namespace

Answer ErrorAnswer(uint64_t id, const absl::Status& status) {
  auto r = std::make_shared<DistillResponse>();
  r->set_micro_batch_id(id);
  r->set_code(static_cast<int>(status.code()));
  r->set_message(std::string(status.message()));
  return r;
}

DistillReactor::DistillReactor(TeacherServiceImpl* service, std::string client,
                               rpc::CallCredentials credentials,
                               std::shared_ptr<SharedRegion> region)
    : service_(service),
      client_(std::move(client)),
      credentials_(std::move(credentials)),
      region_(std::move(region)) {
  const absl::Status open = service_->stream_limits().OpenStream(client_);
  opened_ = open.ok();
  service_->Register(this);
  {
    MutexLock lock(&mu_);
    last_read_ = service_->Now();
    if (!opened_) reads_done_ = finished_ = true;
  }
  if (!opened_) {
    Finish(rpc::ToGrpcStatus(open));
    return;
  }
  StartRead(&request_);
}

void DistillReactor::OnReadDone(bool ok) {
  mu_.Lock();
  if (!ok || finished_) {  // Half-closed, broken, or ended by the server.
    reads_done_ = true;
    MaybeFinish();
    return;
  }
  DistillRequest request;
  request.Swap(&request_);
  last_read_ = service_->Now();
  const std::string& job = request.job_id();
  absl::Status refused;
  bool admitted = false;
  if (!job.empty()) {  // An empty job_id is the validator's to answer.
    if (job_.empty()) {
      // The token decides first: an unauthorised stream takes no job slot.
      absl::Status bound = service_->AuthorizeJob(job, credentials_);
      if (bound.ok()) bound = service_->stream_limits().BindJob(job);
      if (!bound.ok()) {  // Ends the stream once its answers are out.
        reads_done_ = true;
        finish_status_ = rpc::ToGrpcStatus(bound);
        MaybeFinish();
        return;
      }
      job_ = job;
    } else if (job != job_) {
      refused = absl::InvalidArgumentError(absl::StrCat("job_id: this stream carries job '", job_,
                                                        "'; open another stream for '", job, "'"));
    }
    if (refused.ok()) {
      refused = service_->stream_limits().Admit(job);
      admitted = refused.ok();
    }
  }
  // Counted active before the service sees it, so the batcher knows
  // whether anyone else could join this micro-batch's batch.
  if (++unanswered_ == 1) service_->AddActiveStreams(1);
  handoff_.push_back(Received{std::move(request), refused, admitted});
  // One thread at a time hands this stream's micro-batches to the service,
  // in the order they were read (otherwise a later one could take the last
  // queue slot). The next read starts first, so it arrives while this one
  // is decoded; held, so the stream cannot be deleted under the loop.
  const bool drain = !handing_;
  handing_ = true;
  if (drain) ++holds_;
  mu_.Unlock();
  StartRead(&request_);
  if (!drain) return;
  for (;;) {
    mu_.Lock();
    if (handoff_.empty()) {
      handing_ = false;
      --holds_;
      UnlockMaybeDelete();
      return;
    }
    Received r = std::move(handoff_.front());
    handoff_.pop_front();
    mu_.Unlock();
    if (!r.refused.ok()) {
      if (service_->metrics()) service_->metrics()->CountRequest(r.refused.code());
      OnAnswer(ErrorAnswer(r.request.micro_batch_id(), r.refused));
      continue;
    }
    service_->Handle(r.request, region_,
                     [this, job = r.request.job_id(), admitted = r.admitted](Answer a) {
                       if (admitted) service_->stream_limits().Release(job);
                       OnAnswer(std::move(a));
                     });
  }
}

void DistillReactor::OnWriteDone(bool ok) {
  mu_.Lock();
  writes_.pop_front();
  if (!ok) writes_.clear();  // The stream is broken; OnDone follows.
  if (!writes_.empty()) {
    const DistillResponse* next = writes_.front().get();
    mu_.Unlock();
    StartWrite(next);
    return;
  }
  writing_ = false;
  MaybeFinish();
}

void DistillReactor::OnDone() {
  std::string job;
  {
    MutexLock lock(&mu_);
    job = job_;
  }
  service_->Unregister(this);
  if (opened_) service_->stream_limits().CloseStream(client_, job);
  mu_.Lock();
  done_ = true;
  UnlockMaybeDelete();
}

void DistillReactor::OnAnswer(Answer answer) {
  mu_.Lock();
  if (--unanswered_ == 0) service_->AddActiveStreams(-1);
  if (done_) {  // Nobody to tell; free ourselves if this was the last.
    UnlockMaybeDelete();
    return;
  }
  writes_.push_back(std::move(answer));
  if (writing_) {
    mu_.Unlock();
    return;
  }
  writing_ = true;
  const DistillResponse* next = writes_.front().get();
  mu_.Unlock();
  StartWrite(next);
}

void DistillReactor::MaybeFinish() {
  if (!reads_done_ || unanswered_ > 0 || writing_ || finished_) {
    mu_.Unlock();
    return;
  }
  finished_ = true;
  const grpc::Status status = finish_status_;
  mu_.Unlock();
  Finish(status);
}

void DistillReactor::UnlockMaybeDelete() {
  const bool last = done_ && unanswered_ == 0 && holds_ == 0;
  mu_.Unlock();
  if (last) delete this;
}

bool DistillReactor::Idle(absl::Time cutoff) const {
  return unanswered_ == 0 && !writing_ && last_read_ < cutoff;
}

bool DistillReactor::HoldIfIdle(absl::Time cutoff) {
  MutexLock lock(&mu_);
  if (done_ || finished_ || !Idle(cutoff)) return false;
  ++holds_;
  return true;
}

bool DistillReactor::EndIfIdle(absl::Time cutoff, absl::Duration timeout) {
  {
    MutexLock lock(&mu_);
    if (done_ || finished_ || !Idle(cutoff)) return false;
    finished_ = true;  // The pending read ends (ok = false) after Finish.
  }
  // Counted before the client can see the end.
  if (service_->metrics()) service_->metrics()->CountLimitRefusal("idle_stream");
  Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                      absl::StrCat("stream idle for ", absl::FormatDuration(timeout),
                                   " with nothing in flight (the teacher's "
                                   "limits.idle_stream_timeout_s); reconnect to send more")));
  return true;
}

void DistillReactor::Unhold() {
  mu_.Lock();
  --holds_;
  UnlockMaybeDelete();
}

}  // namespace mkd::teacher
