#include "student_worker/teacher_stream.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/job_token.h"

namespace mkd::student {

namespace v1 = ::maskedkd::v1;

struct TeacherStream::Call {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<v1::DistillRequest, v1::DistillResponse>> stream;
  int writing = 0;  // Writes in progress; guarded by TeacherStream::mu_.
};

TeacherStream::TeacherStream(std::string address, std::shared_ptr<grpc::Channel> channel,
                             TeacherStreamCallbacks callbacks, std::string job_token)
    : address_(std::move(address)),
      job_token_(std::move(job_token)),
      channel_(std::move(channel)),
      stub_(v1::TeacherService::NewStub(channel_)),
      callbacks_(std::move(callbacks)) {}

void TeacherStream::Start() {
  reader_ = std::thread([this] { ReadLoop(); });
  writer_ = std::thread([this] { WriteLoop(); });
}

TeacherStream::~TeacherStream() {
  std::shared_ptr<Call> call;
  {
    MutexLock lock(&mu_);
    stop_ = true;
    call = call_;
  }
  if (call) call->ctx.TryCancel();  // Unblocks the reader's Read and a stalled Write.
  wake_.SignalAll();
  if (reader_.joinable()) reader_.join();
  if (writer_.joinable()) writer_.join();
}

void TeacherStream::Send(SharedRequest request) {
  {
    MutexLock lock(&mu_);
    if (stop_ || call_ == nullptr) return;
    outbox_.push_back(std::move(request));
  }
  wake_.SignalAll();
}

bool TeacherStream::connected() {
  MutexLock lock(&mu_);
  return call_ != nullptr;
}

void TeacherStream::WriteLoop() {
  MutexLock lock(&mu_);
  while (true) {
    while (!stop_ && (call_ == nullptr || outbox_.empty())) wake_.Wait(&mu_);
    if (stop_) return;
    std::shared_ptr<Call> call = call_;
    SharedRequest request = std::move(outbox_.front());
    outbox_.pop_front();
    ++call->writing;
    mu_.Unlock();
    // May block on flow control; no lock is held, so answers keep flowing.
    // A failed write means the stream broke: the reader sees it too.
    const bool written = call->stream->Write(*request);
    if (written && callbacks_.on_written) callbacks_.on_written(request->micro_batch_id());
    mu_.Lock();
    --call->writing;
    wake_.SignalAll();
  }
}

void TeacherStream::ReadLoop() {
  absl::Duration backoff = absl::Milliseconds(50);
  while (true) {
    {
      MutexLock lock(&mu_);
      if (stop_) return;
    }
    if (!channel_->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Milliseconds(200)))) {
      continue;  // gRPC's own reconnect backoff runs meanwhile.
    }
    auto call = std::make_shared<Call>();
    if (!job_token_.empty()) call->ctx.AddMetadata(kJobTokenMetadata, job_token_);
    call->stream = stub_->Distill(&call->ctx);
    {
      MutexLock lock(&mu_);
      if (stop_) {
        call->ctx.TryCancel();
        call->stream->Finish();
        return;
      }
      call_ = call;
      outbox_.clear();
    }
    wake_.SignalAll();
    const absl::Time opened = absl::Now();
    if (callbacks_.on_connected) callbacks_.on_connected();
    v1::DistillResponse response;
    while (call->stream->Read(&response)) {
      if (callbacks_.on_answer) callbacks_.on_answer(response);
    }
    bool cancel = false;
    {
      MutexLock lock(&mu_);
      call_ = nullptr;
      outbox_.clear();
      // A write on a call that has ended returns by itself: give it a
      // moment before cancelling, because a cancelled call reports
      // CANCELLED instead of the server's status (PERMISSION_DENIED for a
      // job token, say).
      const absl::Time give_up = absl::Now() + absl::Milliseconds(500);
      while (call->writing != 0 && wake_.WaitWithDeadline(&mu_, give_up)) {
      }
      cancel = call->writing != 0;
    }
    if (cancel) {
      call->ctx.TryCancel();  // A writer still blocked in Write returns now.
      MutexLock lock(&mu_);
      while (call->writing != 0) wake_.Wait(&mu_);
    }
    const grpc::Status st = call->stream->Finish();
    {
      MutexLock lock(&mu_);
      if (stop_) return;  // Our own cancel.
    }
    if (callbacks_.on_broken) {
      // The server's code when it gave one (PERMISSION_DENIED for a job
      // token, say), so a micro-batch that runs out of sends reports it.
      const absl::StatusCode code =
          st.ok() ? absl::StatusCode::kUnavailable : static_cast<absl::StatusCode>(st.error_code());
      callbacks_.on_broken(absl::Status(
          code, absl::StrCat("stream to teacher ", address_, " ended: ", st.error_message())));
    }
    // A stream that lived a while was healthy: start the backoff over.
    if (absl::Now() - opened > absl::Seconds(1)) backoff = absl::Milliseconds(50);
    const absl::Time retry_at = absl::Now() + backoff;
    {
      MutexLock lock(&mu_);
      while (!stop_ && wake_.WaitWithDeadline(&mu_, retry_at)) {
      }
    }
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
}

}  // namespace mkd::student
