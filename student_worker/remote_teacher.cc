#include "student_worker/remote_teacher.h"

#include <grpcpp/grpcpp.h>
#include <torch/torch.h>

#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/dtype.h"
#include "common/masking.h"
#include "common/status_macros.h"
#include "common/vit.h"
#include "maskedkd/v1/teacher.grpc.pb.h"
#include "proto/tensor_codec.h"
#include "proto/wire.h"

namespace mkd::student {
namespace {

namespace v1 = maskedkd::v1;
using Stream = grpc::ClientReaderWriter<v1::DistillRequest, v1::DistillResponse>;

ViTConfig ConfigFromInfo(const v1::ModelInfo& info) {
  ViTConfig c;
  c.name = info.model_id();
  c.img_size = info.image_size();
  c.patch_size = info.patch_size();
  c.in_chans = info.in_channels();
  c.num_classes = info.num_classes();
  c.depth = info.depth();
  c.embed_dim = info.embed_dim();
  c.num_heads = info.num_heads();
  c.mlp_ratio = info.mlp_ratio();
  c.dist_token = info.num_prefix_tokens() == 2;
  c.mean.assign(info.mean().begin(), info.mean().end());
  c.std.assign(info.std().begin(), info.std().end());
  return c;
}

bool Retryable(int code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

class RemoteTeacher final : public Teacher {
 public:
  RemoteTeacher(const RemoteTeacherOptions& options, v1::DType wire,
                std::shared_ptr<grpc::Channel> channel, const v1::ModelInfo& info)
      : options_(options),
        wire_(wire),
        channel_(std::move(channel)),
        stub_(v1::TeacherService::NewStub(channel_)),
        config_(ConfigFromInfo(info)) {
    // Ids are unique across restarts of this job (a resumed run must not
    // be answered from the server's cache of the previous run).
    std::random_device rd;
    next_id_ = (uint64_t{rd()} << 32 | rd()) & ~(uint64_t{1} << 63);
    reader_ = std::thread([this] { ReadLoop(); });
    retrier_ = std::thread([this] { RetryLoop(); });
  }

  ~RemoteTeacher() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      if (context_) context_->TryCancel();
    }
    wake_.notify_all();
    retry_wake_.notify_all();
    reader_.join();
    retrier_.join();
    FailAll(absl::CancelledError("remote teacher closed"));
  }

  const ViTConfig& config() const override { return config_; }

  absl::StatusOr<torch::Tensor> Logits(const torch::Tensor& images,
                                       const torch::Tensor& idx) override {
    return AwaitLogits(SubmitLogits(images, idx), options_.timeout + options_.reconnect_timeout);
  }

  PendingLogits SubmitLogits(const torch::Tensor& images, const torch::Tensor& idx) override {
    std::promise<absl::StatusOr<torch::Tensor>> promise;
    PendingLogits future = promise.get_future().share();
    absl::Status st = ValidateImages(config_, images);
    if (st.ok()) st = ValidateKeptIndices(idx, images.size(0), config_.num_patches());
    if (!st.ok()) {
      promise.set_value(st);
      return future;
    }
    v1::DistillRequest request;
    request.set_job_id(options_.job_id);
    request.set_batch(static_cast<int32_t>(idx.size(0)));
    request.set_kept(static_cast<int32_t>(idx.size(1)));
    request.set_kept_indices(proto::EncodeIndices(idx));
    request.set_payload_kind(v1::PAYLOAD_KIND_KEPT_PATCHES);
    request.set_payload_dtype(wire_);
    request.set_payload(proto::EncodeFloats(CutPatches(images, idx, config_.patch_size), wire_));
    request.set_timeout_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(options_.timeout)));
    absl::Status fatal;
    uint64_t id = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      id = next_id_++;
      request.set_micro_batch_id(id);
      Pending& p = pending_[id];
      p.request = std::move(request);  // Kept (not copied) for re-sends.
      p.promise = std::move(promise);
      p.attempts = 1;
      fatal = fatal_;
      if (fatal.ok()) {
        Send(p.request);
        return future;
      }
    }
    Fail(id, fatal);
    return future;
  }

  absl::StatusOr<torch::Tensor> Saliency(const torch::Tensor&) override {
    return absl::UnimplementedError(
        "criterion teacher_topk needs the teacher's full attention, which a remote teacher "
        "does not send; use an in-process teacher (distill.teacher_address: \"\")");
  }

 private:
  struct Pending {
    v1::DistillRequest request;
    std::promise<absl::StatusOr<torch::Tensor>> promise;
    int attempts = 0;
  };

  // REQUIRES: mu_ held. A failed write means the stream broke; the reader
  // notices, reconnects and sends everything pending again.
  void Send(const v1::DistillRequest& request) {
    if (stream_ != nullptr) stream_->Write(request);
  }

  void Fail(uint64_t id, const absl::Status& status) {
    std::promise<absl::StatusOr<torch::Tensor>> promise;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(id);
      if (it == pending_.end()) return;
      promise = std::move(it->second.promise);
      pending_.erase(it);
    }
    promise.set_value(status);
  }

  void FailAll(const absl::Status& status) {
    std::map<uint64_t, Pending> failed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      failed.swap(pending_);
    }
    for (auto& [id, p] : failed) p.promise.set_value(status);
  }

  void OnResponse(const v1::DistillResponse& r) {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = pending_.find(r.micro_batch_id());
    if (it == pending_.end()) return;  // A second answer to a resent id.
    if (r.code() != 0 && Retryable(r.code()) && it->second.attempts < options_.max_attempts) {
      // Back off a little (the server said it is busy), then the same id.
      // The retry thread re-sends it, so this thread goes on reading the
      // other micro-batches' answers meanwhile.
      const int attempt = it->second.attempts++;
      retries_.emplace(absl::Now() + absl::Milliseconds(std::min(20 << attempt, 1000)),
                       r.micro_batch_id());
      lock.unlock();
      retry_wake_.notify_one();
      return;
    }
    Pending p = std::move(it->second);
    pending_.erase(it);
    lock.unlock();
    if (r.code() != 0) {
      p.promise.set_value(absl::Status(static_cast<absl::StatusCode>(r.code()),
                                       absl::StrCat("teacher at ", options_.address, ": ",
                                                    r.message())));
      return;
    }
    auto logits = proto::DecodeFloats(r.logits(), r.logits_dtype(),
                                      {r.logits_shape().begin(), r.logits_shape().end()},
                                      "teacher logits");
    if (logits.ok() && (logits->dim() != 2 || logits->size(0) != p.request.batch() ||
                        logits->size(1) != config_.num_classes)) {
      logits = absl::InternalError(absl::StrCat("teacher sent logits of shape ",
                                                ShapeString(logits->sizes().vec()), " for ",
                                                p.request.batch(), " images"));
    }
    p.promise.set_value(std::move(logits));
  }

  // Re-sends micro-batches whose backoff has passed (still pending ones
  // only: a resend after a reconnect may have answered them already).
  void RetryLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (retries_.empty()) {
        retry_wake_.wait(lock);
        continue;
      }
      const absl::Time due = retries_.begin()->first;
      if (absl::Now() < due) {
        retry_wake_.wait_for(lock, absl::ToChronoNanoseconds(due - absl::Now()));
        continue;
      }
      const uint64_t id = retries_.begin()->second;
      retries_.erase(retries_.begin());
      auto it = pending_.find(id);
      if (it != pending_.end()) Send(it->second.request);
    }
  }

  // Owns the stream: opens it, reads answers, and on a break reopens it and
  // sends every unanswered micro-batch again.
  void ReadLoop() {
    absl::Time broken_since = absl::Now();
    absl::Duration backoff = absl::Milliseconds(50);
    absl::Status last = absl::UnavailableError("not connected yet");
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) return;
      }
      if (channel_->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Milliseconds(500)))) {
        auto context = std::make_unique<grpc::ClientContext>();
        std::unique_ptr<Stream> stream;
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (stop_) return;
          stream = stub_->Distill(context.get());
          stream_ = stream.get();
          context_ = context.get();
          fatal_ = absl::OkStatus();
          for (auto& [id, p] : pending_) Send(p.request);
        }
        v1::DistillResponse r;
        while (stream->Read(&r)) OnResponse(r);
        {
          std::lock_guard<std::mutex> lock(mu_);
          stream_ = nullptr;
          context_ = nullptr;
        }
        grpc::Status st = stream->Finish();
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (stop_) return;  // Our own cancel, from the destructor.
        }
        last = absl::UnavailableError(absl::StrCat("stream ended: ", st.error_message()));
        broken_since = absl::Now();  // It was up until now.
        backoff = absl::Milliseconds(50);
        std::fprintf(stderr, "remote teacher %s: %s; reconnecting\n", options_.address.c_str(),
                     std::string(last.message()).c_str());
      }
      if (absl::Now() - broken_since > options_.reconnect_timeout) {
        absl::Status fatal = absl::UnavailableError(
            absl::StrCat("teacher at ", options_.address, " unreachable for ",
                         absl::FormatDuration(options_.reconnect_timeout), ": ", last.message()));
        {
          std::lock_guard<std::mutex> lock(mu_);
          fatal_ = fatal;
        }
        FailAll(fatal);
      }
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait_for(lock, absl::ToChronoNanoseconds(backoff), [&] { return stop_; });
      backoff = std::min(backoff * 2, absl::Seconds(1));
    }
  }

  // Constant after construction.
  const RemoteTeacherOptions options_;
  const v1::DType wire_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TeacherService::Stub> stub_;
  const ViTConfig config_;

  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable retry_wake_;
  std::map<uint64_t, Pending> pending_;     // Guarded by mu_.
  std::multimap<absl::Time, uint64_t> retries_;  // Due time -> id; guarded by mu_.
  uint64_t next_id_ = 0;                    // Guarded by mu_.
  Stream* stream_ = nullptr;                // Guarded by mu_; owned by ReadLoop.
  grpc::ClientContext* context_ = nullptr;  // Guarded by mu_; owned by ReadLoop.
  absl::Status fatal_;                      // Guarded by mu_: set when unreachable.
  bool stop_ = false;                       // Guarded by mu_.
  std::thread reader_;
  std::thread retrier_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Teacher>> MakeRemoteTeacher(const RemoteTeacherOptions& options) {
  MKD_ASSIGN_OR_RETURN(v1::DType wire, proto::ParseWireDType(options.wire_dtype));
  if (options.max_attempts < 1) return absl::InvalidArgumentError("max_attempts must be >= 1");
  grpc::ChannelArguments args;
  // gRPC's default reconnect backoff grows to 2 minutes; a restarted
  // teacher should be found within a second.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxReceiveMessageSize(64 << 20);
  // Micro-batches are megabytes: start HTTP/2 flow control with a window
  // that holds one, instead of 64 KiB grown by probing.
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 << 20);
  auto channel =
      grpc::CreateCustomChannel(options.address, grpc::InsecureChannelCredentials(), args);
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options.reconnect_timeout));
  v1::ModelInfo info;
  grpc::Status st =
      v1::TeacherService::NewStub(channel)->GetModelInfo(&ctx, v1::ModelInfoRequest(), &info);
  if (!st.ok()) {
    return absl::UnavailableError(absl::StrCat("teacher at '", options.address,
                                               "': GetModelInfo failed: ", st.error_message()));
  }
  return std::unique_ptr<Teacher>(new RemoteTeacher(options, wire, channel, info));
}

}  // namespace mkd::student
