// RemoteTeacher: micro-batch routing, retries and failover across the
// teachers it streams to (remote_teacher_pool.cc finds those teachers).
#include <torch/torch.h>

#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/dtype.h"
#include "common/host_identity.h"
#include "common/log.h"
#include "common/masking.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "common/vit.h"
#include "proto/model_info.h"
#include "proto/tensor_codec.h"
#include "proto/wire.h"
#include "rpc/retry.h"
#include "rpc/status.h"
#include "teacher_client/remote_teacher_impl.h"

namespace mkd::client {

RemoteTeacher::RemoteTeacher(const RemoteTeacherOptions& options, v1::DType wire,
                             const v1::ModelInfo& info)
    : options_(options),
      wire_(wire),
      config_(proto::ViTConfigFromModelInfo(info)),
      device_(options.device),
      d2h_(device_) {
  // Ids are unique across restarts of this job (a resumed run must not
  // be answered from the server's cache of the previous run).
  std::random_device rd;
  next_id_ = (uint64_t{rd()} << 32 | rd()) & ~(uint64_t{1} << 63);
  retrier_ = Thread(
      "mkd-retrier", [this] { RetryLoop(); },
      [this](const absl::Status& s) {
        if (!s.ok()) FailEverything(s);
      });
}

RemoteTeacher::~RemoteTeacher() {
  membership_.reset();  // Its threads call into this object: stop them first.
  std::map<std::string, Endpoint> endpoints;
  {
    MutexLock lock(&mu_);
    stop_ = true;
    endpoints.swap(endpoints_);
  }
  wake_.SignalAll();
  endpoints.clear();              // Joins the streams' threads, outside mu_ (they call back).
  retrier_.Join().IgnoreError();  // A failure was reported by FailEverything.
  Fulfil failed;
  {
    MutexLock lock(&mu_);
    for (auto& [id, p] : pending_) {
      failed.emplace_back(std::move(p.promise), absl::CancelledError("remote teacher closed"));
    }
    pending_.clear();
  }
  Deliver(failed);
}

void RemoteTeacher::Deliver(Fulfil& failed) {
  for (auto& [promise, status] : failed) promise.set_value(status);
  failed.clear();
}

void RemoteTeacher::AddEndpoint(const std::string& address, std::shared_ptr<grpc::Channel> channel,
                                const v1::ModelInfo& info) {
  const int64_t max_request_bytes = info.max_request_bytes();
  TeacherStreamCallbacks cb;
  cb.on_connected = [this, address] { OnConnected(address); };
  cb.on_answer = [this, address](const v1::DistillResponse& r) { OnAnswer(address, r); };
  cb.on_broken = [this, address](const absl::Status& why) { OnBroken(address, why); };
  cb.on_written = [this, address](uint64_t id, double encode_s) {
    OnWritten(address, id, encode_s);
  };
  // Shared memory needs the same host: auto offers it only then (and falls
  // back to bytes if the teacher still cannot map it); shm insists.
  TeacherStreamPlane plane;
  plane.region_bytes = options_.shm_region_bytes;
  if (device_.is_cuda()) plane.cuda_device = device_.has_index() ? device_.index() : 0;
  const bool same_host = !info.host_id().empty() && info.host_id() == ThisHost().host_id;
  if (options_.data_plane == DataPlaneKind::kShm ||
      (options_.data_plane == DataPlaneKind::kAuto && same_host)) {
    plane.kind = DataPlaneKind::kShm;
    plane.fallback = options_.data_plane == DataPlaneKind::kAuto;
  }
  auto stream = std::make_unique<TeacherStream>(address, std::move(channel), std::move(cb),
                                                options_.job_token, plane);
  std::unique_ptr<TeacherStream> loser;  // Destroyed outside mu_.
  {
    MutexLock lock(&mu_);
    Endpoint& e = endpoints_[address];
    if (e.stream != nullptr || stop_) {
      loser = std::move(stream);
    } else {
      e.stream = std::move(stream);
      e.max_request_bytes = max_request_bytes;
      // Started once it is in endpoints_, where its callbacks look for it.
      e.stream->Start();
    }
  }
}

void RemoteTeacher::KeepOnly(const std::set<std::string>& keep) {
  std::vector<std::unique_ptr<TeacherStream>> removed;  // Destroyed outside mu_.
  std::vector<std::string> dropped;                     // Logged outside mu_.
  Fulfil failed;
  {
    MutexLock lock(&mu_);
    for (auto it = endpoints_.begin(); it != endpoints_.end();) {
      if (keep.count(it->first) > 0) {
        ++it;
        continue;
      }
      const std::string address = it->first;
      removed.push_back(std::move(it->second.stream));
      it = endpoints_.erase(it);
      dropped.push_back(address);
      Reroute(address, /*failover=*/true, &failed);
    }
  }
  for (const std::string& address : dropped) {
    MKD_LOG(INFO) << "remote teacher " << address << ": no longer assigned";
  }
  Deliver(failed);
}

bool RemoteTeacher::HasEndpoint(const std::string& address) {
  MutexLock lock(&mu_);
  return endpoints_.count(address) > 0 || refused_.count(address) > 0;
}

bool RemoteTeacher::WaitForEndpoint(absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  MutexLock lock(&mu_);
  for (;;) {
    for (const auto& [a, e] : endpoints_) {
      if (e.connected) return true;
    }
    if (stop_) return true;
    if (!wake_.WaitWithDeadline(&mu_, deadline)) return false;
  }
}

void RemoteTeacher::OnConnected(const std::string& address) {
  Fulfil failed;
  {
    MutexLock lock(&mu_);
    auto it = endpoints_.find(address);
    if (it == endpoints_.end()) return;
    it->second.connected = true;
    it->second.outstanding_tokens = 0;
    // What waited for a teacher (or was sent here before a reconnect) goes
    // out now.
    std::vector<uint64_t> waiting;  // Route may erase from pending_.
    for (auto& [id, p] : pending_) {
      if (p.endpoint.empty() && !p.retry_scheduled) waiting.push_back(id);
    }
    for (uint64_t id : waiting) Route(id, &failed);
  }
  wake_.SignalAll();
  Deliver(failed);
}

void RemoteTeacher::OnBroken(const std::string& address, const absl::Status& why) {
  Fulfil failed;
  {
    MutexLock lock(&mu_);
    auto it = endpoints_.find(address);
    if (it == endpoints_.end()) return;
    it->second.connected = false;
    // What was sent there, and what waits for any teacher, now has this
    // as the reason it is not answered (a stream that cannot open says
    // why here, every time it tries).
    for (auto& [id, p] : pending_) {
      if (p.endpoint == address || (p.endpoint.empty() && !p.retry_scheduled)) p.last_error = why;
    }
    // With other teachers connected this is a failover; with one teacher,
    // its micro-batches wait for it to come back.
    Reroute(address, /*failover=*/endpoints_.size() > 1, &failed);
  }
  MKD_LOG(WARNING) << "remote teacher " << address << ": " << why.message() << "; reconnecting";
  Deliver(failed);
}

void RemoteTeacher::Reroute(const std::string& address, bool failover, Fulfil* failed) {
  // Ids first: Route erases a micro-batch that has used up its sends, which
  // would invalidate an iterator over pending_ (it crashed a client whose
  // only teacher kept refusing its streams).
  std::vector<uint64_t> ids;
  for (auto& [id, p] : pending_) {
    if (p.endpoint != address) continue;
    p.endpoint.clear();
    ids.push_back(id);
  }
  for (uint64_t id : ids) {
    if (failover) ++stats_.failovers;
    Route(id, failed);
  }
}

void RemoteTeacher::Route(uint64_t id, Fulfil* failed) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending& p = it->second;
  if (p.attempts >= options_.max_attempts) {
    failed->emplace_back(
        std::move(p.promise),
        absl::Status(p.last_error.code(),
                     absl::StrCat("after ", p.attempts, " sends: ", p.last_error.message())));
    pending_.erase(it);
    return;
  }
  const int64_t bytes = p.mb->MessageBytes();
  Endpoint* best = nullptr;
  std::string best_address;
  for (auto& [address, e] : endpoints_) {
    if (!e.connected || (e.max_request_bytes > 0 && bytes > e.max_request_bytes)) continue;
    if (best == nullptr || e.outstanding_tokens < best->outstanding_tokens) {
      best = &e;
      best_address = address;
    }
  }
  if (best == nullptr) {
    if (unrouted_since_ == absl::InfiniteFuture()) unrouted_since_ = absl::Now();
    return;  // Waits for a teacher; the retry loop times it out.
  }
  p.endpoint = best_address;
  p.sent = absl::Now();
  p.written = absl::InfinitePast();
  p.encode_s = 0;
  ++p.attempts;
  best->outstanding_tokens += p.tokens;
  best->stream->Send(p.mb);
}

absl::StatusOr<torch::Tensor> RemoteTeacher::Logits(const torch::Tensor& images,
                                                    const torch::Tensor& idx) {
  return AwaitLogits(SubmitLogits(images, idx), options_.timeout + options_.reconnect_timeout);
}

PendingLogits RemoteTeacher::SubmitLogits(const torch::Tensor& images, const torch::Tensor& idx) {
  std::promise<absl::StatusOr<TeacherAnswer>> promise;
  PendingLogits future = promise.get_future().share();
  // Shapes only: index values on a device would cost a wait for it, and
  // the teacher checks them anyway.
  absl::Status st = ValidateImages(config_, images);
  if (st.ok()) st = ValidateKeptIndices(idx, images.size(0), config_.num_patches());
  auto mb = std::make_shared<OutgoingMicroBatch>();
  if (st.ok()) {
    st = CatchTorch("copying kept patches to the host", [&] {
      // Cut and converted on the images' device; copied to the host after
      // the kernels producing them, without this thread waiting.
      DeviceToHost::Transfer t =
          d2h_.Start({CutPatches(images, idx, config_.patch_size).to(proto::WireTorchDtype(wire_)),
                      idx.to(torch::kInt32)});
      mb->payload = static_cast<const char*>(t.host[0].data_ptr());
      mb->indices = static_cast<const char*>(t.host[1].data_ptr());
      mb->payload_bytes = static_cast<int64_t>(t.host[0].nbytes());
      mb->indices_bytes = static_cast<int64_t>(t.host[1].nbytes());
      if (t.done) mb->wait_ready = [t] { t.Wait(); };
      if (t.sources) mb->copy_payload_into = [t](void* dst) { return t.CopyInto(0, dst); };
      mb->keepalive = std::make_shared<DeviceToHost::Transfer>(std::move(t));
    });
  }
  if (!st.ok()) {
    promise.set_value(st);
    return future;
  }
  v1::DistillRequest& h = mb->header;
  h.set_job_id(options_.job_id);
  h.set_job_weight(options_.job_weight);
  h.set_micro_batch_size(static_cast<int32_t>(idx.size(0)));
  h.set_kept_patches(static_cast<int32_t>(idx.size(1)));
  h.set_payload_kind(v1::PAYLOAD_KIND_KEPT_PATCHES);
  h.set_payload_dtype(wire_);
  h.set_timeout_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(options_.timeout)));
  mb->logits_bytes = idx.size(0) * config_.num_classes * 4;
  Fulfil failed;
  {
    MutexLock lock(&mu_);
    const uint64_t id = next_id_++;
    h.set_micro_batch_id(id);
    const int64_t bytes = mb->MessageBytes();
    if (!broken_.ok()) failed.emplace_back(std::move(promise), broken_);  // Nothing would retry it.
    for (const auto& [address, e] : endpoints_) {
      if (!failed.empty()) break;  // Already failed: the promise is gone.
      if (e.max_request_bytes > 0 && bytes > e.max_request_bytes) {
        failed.emplace_back(
            std::move(promise),
            absl::InvalidArgumentError(absl::StrCat(
                "a micro-batch of ", bytes, " bytes exceeds teacher ", address,
                "'s max_request_bytes (", e.max_request_bytes,
                "); use more micro-batches (distill.micro_batches) or a smaller data.batch_size")));
        break;
      }
    }
    if (failed.empty()) {
      Pending& p = pending_[id];
      p.mb = std::move(mb);
      p.promise = std::move(promise);
      p.tokens = idx.size(0) * (idx.size(1) + 1);
      Route(id, &failed);
    }
  }
  Deliver(failed);
  return future;
}

void RemoteTeacher::OnWritten(const std::string& address, uint64_t id, double encode_s) {
  MutexLock lock(&mu_);
  auto it = pending_.find(id);
  if (it != pending_.end() && it->second.endpoint == address) {
    it->second.written = absl::Now();
    it->second.encode_s = encode_s;
  }
}

absl::StatusOr<torch::Tensor> RemoteTeacher::DecodeLogits(const std::string& address,
                                                          const v1::DistillResponse& r,
                                                          int64_t batch) const {
  const std::vector<int64_t> shape(r.logits_shape().begin(), r.logits_shape().end());
  if (shape.size() != 2 || shape[0] != batch || shape[1] != config_.num_classes) {
    return absl::InternalError(absl::StrCat("teacher at ", address, " sent logits of shape ",
                                            ShapeString(shape), " for ", batch, " images"));
  }
  if (r.logits_dtype() != v1::DTYPE_F32) {
    return proto::DecodeFloats(r.logits(), r.logits_dtype(), shape, "teacher logits");
  }
  // Straight into (pinned, for a CUDA student) memory the trainer copies
  // to its device without waiting.
  torch::Tensor logits = torch::empty(
      shape, torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(device_.is_cuda()));
  MKD_RETURN_IF_ERROR(
      proto::DecodeWireFloatsInto(r.logits(), r.logits_dtype(), logits, "teacher logits"));
  return logits;
}

void RemoteTeacher::OnAnswer(const std::string& address, const v1::DistillResponse& r) {
  std::promise<absl::StatusOr<TeacherAnswer>> promise;
  int64_t batch = 0;
  StageSeconds stages;
  {
    MutexLock lock(&mu_);
    auto it = pending_.find(r.micro_batch_id());
    if (it == pending_.end()) return;  // A second answer to a re-sent id.
    Pending& p = it->second;
    if (auto e = endpoints_.find(p.endpoint); e != endpoints_.end()) {
      e->second.outstanding_tokens = std::max<int64_t>(0, e->second.outstanding_tokens - p.tokens);
    }
    if (r.code() != 0 && rpc::IsTransient(static_cast<absl::StatusCode>(r.code())) &&
        p.attempts < options_.max_attempts) {
      // The teacher is busy or leaving: back off a little, then send the same
      // id to whichever teacher is least loaded then (the retry thread does).
      p.last_error =
          rpc::StatusFromCode(r.code(), absl::StrCat("teacher at ", address, ": ", r.message()));
      p.endpoint.clear();
      p.retry_scheduled = true;
      ++stats_.retries;
      retries_.emplace(absl::Now() + absl::Milliseconds(std::min(20 << p.attempts, 1000)),
                       r.micro_batch_id());
      wake_.SignalAll();
      return;
    }
    if (r.code() == 0) {
      const double rtt = absl::ToDoubleSeconds(absl::Now() - p.sent);
      stats_.round_trips_s.push_back(rtt);
      stats_.service_s += r.queue_seconds() + r.compute_seconds();
      // For the planner, which simulates queueing behind the job's own
      // micro-batches itself: the teacher's time for this micro-batch (its
      // share of the batch it rode in), and the round trip without the
      // queueing (network, encoding, decoding).
      const double service = r.compute_seconds() / std::max(1, r.batched_with());
      const double overhead = std::max(0.0, rtt - r.queue_seconds() - r.compute_seconds());
      job_timings_.set_teacher_round_trip_s(job_timings_.teacher_round_trip_s() + overhead +
                                            service);
      job_timings_.set_teacher_compute_s(job_timings_.teacher_compute_s() + service);
      ++job_round_trips_;
      // The path of this answer's last send (common/micro_batch_stages.h).
      const double handed = p.written > p.sent ? absl::ToDoubleSeconds(p.written - p.sent) : 0;
      const double send = handed - p.encode_s;
      stages.Set(Stage::kEncode, p.encode_s);
      stages.Set(Stage::kSend, send);
      stages.Set(Stage::kServerDecode, r.decode_seconds());
      stages.Set(Stage::kServerQueue, r.queue_seconds());
      stages.Set(Stage::kServerForward, r.compute_seconds());
      stages.Set(Stage::kServerEncode, r.encode_seconds());
      stages.Set(Stage::kTransfer, rtt - handed - r.decode_seconds() - r.queue_seconds() -
                                       r.compute_seconds() - r.encode_seconds());
    }
    promise = std::move(p.promise);
    batch = p.mb->header.micro_batch_size();
    pending_.erase(it);
  }
  if (r.code() != 0) {
    promise.set_value(
        rpc::StatusFromCode(r.code(), absl::StrCat("teacher at ", address, ": ", r.message())));
    return;
  }
  const absl::Time decoding = absl::Now();
  absl::StatusOr<torch::Tensor> logits = absl::InternalError("not decoded");
  try {  // No exception leaves the stream's reader thread.
    logits = DecodeLogits(address, r, batch);
  } catch (const std::exception& e) {
    logits = absl::InternalError(absl::StrCat("decoding teacher logits: ", e.what()));
  }
  if (!logits.ok()) {
    promise.set_value(logits.status());
    return;
  }
  stages.Set(Stage::kDecode, absl::ToDoubleSeconds(absl::Now() - decoding));
  promise.set_value(TeacherAnswer{*std::move(logits), stages});
}

void RemoteTeacher::FailEverything(const absl::Status& why) {
  const absl::Status broken =
      absl::Status(why.code(), absl::StrCat("remote teacher retry thread died: ", why.message()));
  Fulfil failed;
  {
    MutexLock lock(&mu_);
    broken_ = broken;
    for (auto& [id, p] : pending_) failed.emplace_back(std::move(p.promise), broken);
    pending_.clear();
    retries_.clear();
  }
  Deliver(failed);
}

void RemoteTeacher::RetryLoop() {
  MutexLock lock(&mu_);
  while (!stop_) {
    const absl::Time now = absl::Now();
    Fulfil failed;
    while (!retries_.empty() && retries_.begin()->first <= now) {
      const uint64_t id = retries_.begin()->second;
      retries_.erase(retries_.begin());
      auto it = pending_.find(id);
      if (it == pending_.end()) continue;
      it->second.retry_scheduled = false;
      Route(id, &failed);
    }
    // Micro-batches with no teacher to go to fail after reconnect_timeout.
    bool unrouted = false;
    for (const auto& [id, p] : pending_)
      unrouted = unrouted || (p.endpoint.empty() && !p.retry_scheduled);
    if (!unrouted) {
      unrouted_since_ = absl::InfiniteFuture();
    } else if (now - unrouted_since_ > options_.reconnect_timeout) {
      std::vector<std::string> tried;
      for (const auto& [address, e] : endpoints_) tried.push_back(address);
      for (auto it = pending_.begin(); it != pending_.end();) {
        if (!it->second.endpoint.empty() || it->second.retry_scheduled) {
          ++it;
          continue;
        }
        failed.emplace_back(
            std::move(it->second.promise),
            absl::UnavailableError(absl::StrCat(
                "no teacher reachable for ", absl::FormatDuration(options_.reconnect_timeout),
                " (teachers: ", tried.empty() ? "none assigned" : absl::StrJoin(tried, ", "),
                "); last error: ", it->second.last_error.message())));
        it = pending_.erase(it);
      }
      unrouted_since_ = absl::InfiniteFuture();
    }
    if (!failed.empty()) {
      mu_.Unlock();
      Deliver(failed);
      mu_.Lock();
      continue;
    }
    absl::Time next = now + absl::Milliseconds(100);
    if (!retries_.empty()) next = std::min(next, retries_.begin()->first);
    wake_.WaitWithDeadline(&mu_, next);
  }
}

absl::StatusOr<torch::Tensor> RemoteTeacher::Saliency(const torch::Tensor&) {
  return absl::UnimplementedError(
      "criterion teacher_topk needs the teacher's full attention, which a remote teacher "
      "does not send; use an in-process teacher (distill.teacher_address: \"\")");
}

}  // namespace mkd::client
