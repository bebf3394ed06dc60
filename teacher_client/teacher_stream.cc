#include "teacher_client/teacher_stream.h"

#include <exception>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "proto/shared_memory.h"
#include "rpc/pool_auth.h"
#include "rpc/retry.h"
#include "rpc/status.h"

namespace mkd::client {

namespace v1 = ::maskedkd::v1;

struct TeacherStream::Call {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<v1::DistillRequest, v1::DistillResponse>> stream;
  std::unique_ptr<DataPlane> plane;
  int writing = 0;  // Writes in progress; guarded by TeacherStream::mu_.
};

TeacherStream::TeacherStream(std::string address, std::shared_ptr<grpc::Channel> channel,
                             TeacherStreamCallbacks callbacks, std::string job_token,
                             TeacherStreamPlane plane)
    : address_(std::move(address)),
      job_token_(std::move(job_token)),
      channel_(std::move(channel)),
      stub_(v1::TeacherService::NewStub(channel_)),
      callbacks_(std::move(callbacks)),
      plane_(plane) {}

void TeacherStream::Start() {
  const auto on_exit = [this](const absl::Status& s) {
    if (!s.ok()) Die(s);
  };
  reader_ = Thread(
      "mkd-stream-read", [this] { ReadLoop(); }, on_exit);
  writer_ = Thread(
      "mkd-stream-write", [this] { WriteLoop(); }, on_exit);
}

void TeacherStream::Die(const absl::Status& why) {
  std::shared_ptr<Call> call;
  {
    MutexLock lock(&mu_);
    stop_ = true;  // For good: the other thread ends too, and no reconnect.
    call = call_;
    call_ = nullptr;
  }
  if (call) call->ctx.TryCancel();
  wake_.SignalAll();
  if (callbacks_.on_broken) {
    callbacks_.on_broken(absl::Status(
        why.code(), absl::StrCat("teacher ", address_, ": stream thread died: ", why.message())));
  }
}

TeacherStream::~TeacherStream() {
  std::shared_ptr<Call> call, opening;
  {
    MutexLock lock(&mu_);
    stop_ = true;
    call = call_;
    opening = opening_;
  }
  // Unblocks the reader's Read or handshake and a stalled Write.
  if (call) call->ctx.TryCancel();
  if (opening) opening->ctx.TryCancel();
  wake_.SignalAll();
  // A thread that died has reported it through Die.
  reader_.Join().IgnoreError();
  writer_.Join().IgnoreError();
}

void TeacherStream::Send(SharedMicroBatch mb) {
  {
    MutexLock lock(&mu_);
    if (stop_ || call_ == nullptr) return;
    outbox_.push_back(std::move(mb));
  }
  wake_.SignalAll();
}

bool TeacherStream::connected() {
  MutexLock lock(&mu_);
  return call_ != nullptr;
}

DataPlaneKind TeacherStream::plane() {
  MutexLock lock(&mu_);
  return call_ ? call_->plane->kind() : DataPlaneKind::kGrpc;
}

void TeacherStream::WriteLoop() {
  MutexLock lock(&mu_);
  while (true) {
    while (!stop_ && (call_ == nullptr || outbox_.empty())) wake_.Wait(&mu_);
    if (stop_) return;
    std::shared_ptr<Call> call = call_;
    SharedMicroBatch mb = std::move(outbox_.front());
    outbox_.pop_front();
    ++call->writing;
    mu_.Unlock();
    // Encoding (the copy into the message or the region) runs here, on
    // the writer, not on the trainer's thread. A failed write means the
    // stream broke: the reader sees it too.
    const absl::Time encoding = absl::Now();
    bool written = false;
    std::string failed;  // Why encoding failed, logged outside the lock.
    try {
      const v1::DistillRequest request = call->plane->Encode(*mb);
      const double encode_s = absl::ToDoubleSeconds(absl::Now() - encoding);
      // May block on flow control; no lock is held, so answers keep flowing.
      written = call->stream->Write(request);
      if (written && callbacks_.on_written)
        callbacks_.on_written(mb->header.micro_batch_id(), encode_s);
    } catch (const std::exception& e) {  // This micro-batch's failure, not the stream's.
      failed = e.what();
    }
    if (!failed.empty()) {
      MKD_LOG(ERROR) << "teacher " << address_ << ": encoding micro-batch "
                     << mb->header.micro_batch_id() << " failed: " << failed;
    }
    mu_.Lock();
    --call->writing;
    wake_.SignalAll();
  }
}

std::shared_ptr<TeacherStream::Call> TeacherStream::Open() {
  auto call = std::make_shared<Call>();
  rpc::AddTokenMetadata(&call->ctx, job_token_);
  std::unique_ptr<ShmRegion> region;
  std::string no_shm;  // Why this call carries bytes although shm was asked for.
  if (plane_.kind == DataPlaneKind::kShm) {
    absl::StatusOr<std::unique_ptr<ShmRegion>> made =
        ShmRegion::Create(plane_.region_bytes, plane_.cuda_device);
    if (made.ok()) {
      region = *std::move(made);
      call->ctx.AddMetadata(kShmRegionKey, region->name());
      call->ctx.AddMetadata(kShmBytesKey, std::to_string(region->size()));
    } else {
      no_shm = std::string(made.status().message());
    }
  }
  {
    MutexLock lock(&mu_);
    if (stop_) return nullptr;
    opening_ = call;
  }
  call->stream = stub_->Distill(&call->ctx);
  if (region) {
    // The teacher answers the offer in its initial metadata, before any
    // micro-batch.
    call->stream->WaitForInitialMetadata();
    const auto& md = call->ctx.GetServerInitialMetadata();
    auto it = md.find(kDataPlaneKey);
    const std::string answer =
        it == md.end() ? "" : std::string(it->second.data(), it->second.size());
    region->Unlink();  // The teacher has it open, or never will.
    if (answer == "shm") {
      call->plane = MakeShmPlane(std::move(region));
    } else {
      no_shm = answer.empty() ? "the teacher did not take the shared-memory region"
                              : absl::StrCat("the teacher answered '", answer, "'");
    }
  }
  if (!no_shm.empty() && !plane_.fallback) {
    call->ctx.TryCancel();
    call->stream->Finish();
    {
      MutexLock lock(&mu_);
      opening_ = nullptr;
    }
    if (callbacks_.on_broken) {
      callbacks_.on_broken(absl::FailedPreconditionError(absl::StrCat(
          "teacher ", address_, " cannot use shared memory (distill.data_plane: shm): ", no_shm,
          "; use data_plane auto or grpc")));
    }
    return nullptr;
  }
  if (!call->plane) call->plane = MakeGrpcPlane();
  ReleasableMutexLock lock(&mu_);
  const bool say_fallback = !no_shm.empty() && !said_fallback_;
  if (say_fallback) said_fallback_ = true;  // Once per teacher, not per reconnect.
  opening_ = nullptr;
  if (stop_) {
    call->ctx.TryCancel();
    call->stream->Finish();
    return nullptr;
  }
  call_ = call;
  outbox_.clear();
  lock.Release();
  if (say_fallback) {
    MKD_LOG(WARNING) << "teacher " << address_ << ": shared memory not possible (" << no_shm
                     << "); sending bytes over gRPC";
  }
  return call;
}

void TeacherStream::ReadLoop() {
  rpc::Backoff backoff(absl::Milliseconds(50), absl::Seconds(1));
  while (true) {
    {
      MutexLock lock(&mu_);
      if (stop_) return;
    }
    if (!channel_->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Milliseconds(200)))) {
      continue;  // gRPC's own reconnect backoff runs meanwhile.
    }
    std::shared_ptr<Call> call = Open();
    const absl::Time opened = absl::Now();
    if (call != nullptr) {
      wake_.SignalAll();
      if (callbacks_.on_connected) callbacks_.on_connected();
      v1::DistillResponse response;
      while (call->stream->Read(&response)) {
        call->plane->Decode(&response);  // Logits from the region into the message.
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
        const std::string context = absl::StrCat("stream to teacher ", address_, " ended");
        callbacks_.on_broken(st.ok() ? absl::UnavailableError(context + " by the teacher")
                                     : rpc::FromGrpcStatus(st, context));
      }
    }
    // A stream that lived a while was healthy: start the backoff over.
    if (call != nullptr && absl::Now() - opened > absl::Seconds(1)) backoff.Reset();
    const absl::Time retry_at = absl::Now() + backoff.Next();
    {
      MutexLock lock(&mu_);
      while (!stop_ && wake_.WaitWithDeadline(&mu_, retry_at)) {
      }
    }
  }
}

}  // namespace mkd::client
