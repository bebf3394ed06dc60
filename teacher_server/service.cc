#include "teacher_server/service.h"

#include <torch/types.h>

#include <algorithm>
#include <vector>

#include "absl/time/clock.h"
#include "common/device.h"
#include "common/host_identity.h"
#include "common/masking.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "proto/model_info.h"
#include "proto/shared_memory.h"
#include "proto/tensor_codec.h"
#include "proto/wire.h"
#include "teacher_server/distill_reactor.h"
#include "teacher_server/stream_limits.h"

namespace mkd::teacher {
namespace {

using maskedkd::v1::DistillRequest;
using maskedkd::v1::DistillResponse;

// `a` with its logits left out, and marked as written to shared memory.
Answer WithoutLogits(const DistillResponse& a) {
  auto r = std::make_shared<DistillResponse>();
  r->set_micro_batch_id(a.micro_batch_id());
  r->set_logits_dtype(a.logits_dtype());
  *r->mutable_logits_shape() = a.logits_shape();
  *r->mutable_features_shape() = a.features_shape();
  r->set_features(a.features());
  r->set_queue_seconds(a.queue_seconds());
  r->set_compute_seconds(a.compute_seconds());
  r->set_batched_with(a.batched_with());
  r->set_decode_seconds(a.decode_seconds());
  r->set_encode_seconds(a.encode_seconds());
  r->set_logits_in_shm(true);
  return r;
}

}  // namespace

TeacherServiceImpl::TeacherServiceImpl(const TeacherServerConfig& config, Engine* engine,
                                       Batcher* batcher, TeacherMetrics* metrics, Clock clock)
    : engine_(engine),
      batcher_(batcher),
      metrics_(metrics),
      idle_timeout_(absl::Seconds(config.limits.idle_stream_timeout_s)),
      max_shm_region_bytes_(config.limits.max_shm_region_mb << 20),
      cache_(config.dedup_window, absl::Seconds(config.job_idle_s)),
      stream_limits_(config.limits, metrics),
      // A secret file gone since the config was checked is a refusal of
      // every stream (fail closed), never an open server.
      auth_(rpc::MakeServerAuthorizer(config.auth, config.tls)),
      // Copied, not moved: the body still asks whether a clock was given.
      clock_(clock ? clock : Clock(absl::Now)) {
  const ViTConfig& m = engine->config();
  limits_.num_patches = m.num_patches();
  limits_.patch_dim = m.patch_dim();
  limits_.in_chans = m.in_chans;
  limits_.img_size = m.img_size;
  limits_.max_images = config.max_micro_batch_images;
  limits_.num_classes = m.num_classes;

  info_.set_model_id(engine->model_id());
  proto::SetModelArchitecture(m, &info_);
  info_.set_compute_dtype(proto::WireDType(config.dtype));
  info_.set_device(engine->device());
  info_.set_max_micro_batch_images(static_cast<int32_t>(config.max_micro_batch_images));
  info_.set_max_request_bytes(config.max_message_bytes);
  info_.set_host(ThisHost().host);
  info_.set_host_id(ThisHost().host_id);
  if (idle_timeout_ > absl::ZeroDuration() && !clock) {
    // Should it die, idle streams stay open until their students leave;
    // serving goes on, and the thread has logged why.
    sweeper_ = Thread("mkd-idle-sweep", [this] { SweepLoop(); });
  }
}

TeacherServiceImpl::~TeacherServiceImpl() {
  {
    MutexLock lock(&streams_mu_);
    stopping_ = true;
  }
  sweep_wake_.SignalAll();
  sweeper_.Join().IgnoreError();
}

void TeacherServiceImpl::Register(DistillReactor* stream) {
  MutexLock lock(&streams_mu_);
  streams_.insert(stream);
}

void TeacherServiceImpl::Unregister(DistillReactor* stream) {
  MutexLock lock(&streams_mu_);
  streams_.erase(stream);
}

void TeacherServiceImpl::AddActiveStreams(int delta) {
  MutexLock lock(&active_mu_);  // Told to the batcher in the order counted.
  active_streams_ += delta;
  batcher_->SetActiveStreams(active_streams_);
}

void TeacherServiceImpl::SweepIdleStreams() {
  if (idle_timeout_ <= absl::ZeroDuration()) return;
  const absl::Time cutoff = Now() - idle_timeout_;
  std::vector<DistillReactor*> held;
  {
    MutexLock lock(&streams_mu_);
    if (stopping_) return;
    // Held under streams_mu_, so none can be deleted before Unhold.
    for (DistillReactor* s : streams_) {
      if (s->HoldIfIdle(cutoff)) held.push_back(s);
    }
  }
  // Ended outside streams_mu_: a stream's OnDone takes it to unregister.
  for (DistillReactor* s : held) {
    s->EndIfIdle(cutoff, idle_timeout_);
    s->Unhold();
  }
}

void TeacherServiceImpl::SweepLoop() {
  // Checks a few times per timeout, so a stream ends within 1.25 timeouts.
  // The pause is real time whatever the clock: a test's clock may stand still.
  const absl::Duration every = std::min(absl::Seconds(1), idle_timeout_ / 4);
  for (;;) {
    SweepIdleStreams();
    const absl::Time next = absl::Now() + every;
    MutexLock lock(&streams_mu_);
    if (stopping_) return;
    while (!stopping_ && sweep_wake_.WaitWithDeadline(&streams_mu_, next)) {
    }
    if (stopping_) return;
  }
}

grpc::ServerUnaryReactor* TeacherServiceImpl::GetModelInfo(grpc::CallbackServerContext* context,
                                                           const maskedkd::v1::ModelInfoRequest*,
                                                           maskedkd::v1::ModelInfo* info) {
  *info = info_;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

std::shared_ptr<SharedRegion> TeacherServiceImpl::OpenOfferedRegion(
    const grpc::CallbackServerContext& context, std::string* why) const {
  const auto& md = context.client_metadata();
  auto name = md.find(kShmRegionKey);
  auto bytes = md.find(kShmBytesKey);
  if (name == md.end()) return nullptr;
  if (max_shm_region_bytes_ == 0) {
    *why = "shared memory is off on this teacher (limits.max_shm_region_mb: 0)";
    return nullptr;
  }
  int64_t size = 0;
  if (bytes == md.end() ||
      !absl::SimpleAtoi(absl::string_view(bytes->second.data(), bytes->second.size()), &size)) {
    *why = absl::StrCat(kShmBytesKey, " is missing or not a number");
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<SharedRegion>> region = SharedRegion::Open(
      std::string(name->second.data(), name->second.size()), size, max_shm_region_bytes_);
  if (!region.ok()) {
    *why = std::string(region.status().message());
    return nullptr;
  }
  // On a GPU the device copies payloads straight out of the region (DMA);
  // where the driver will not page-lock it, they are copied out first.
  const torch::Device device(engine_->device());
  (*region)->set_page_locked(RegisterHostMemory(device, (*region)->mapped(), size));
  // Counted while held: by the stream, and by answers still to be written.
  TeacherMetrics* metrics = metrics_;
  if (metrics) metrics->AddShmRegions(1);
  return std::shared_ptr<SharedRegion>(region->release(), [metrics, device](SharedRegion* r) {
    if (r->page_locked()) UnregisterHostMemory(device, r->mapped());
    delete r;
    if (metrics) metrics->AddShmRegions(-1);
  });
}

grpc::ServerBidiReactor<DistillRequest, DistillResponse>* TeacherServiceImpl::Distill(
    grpc::CallbackServerContext* context) {
  const bool offered = context->client_metadata().count(kShmRegionKey) > 0;
  std::string why;
  std::shared_ptr<SharedRegion> region = offered ? OpenOfferedRegion(*context, &why) : nullptr;
  if (offered) {
    // The student waits for this answer before sending its first
    // micro-batch on the stream.
    context->AddInitialMetadata(kDataPlaneKey, region ? "shm" : absl::StrCat("grpc; ", why));
  }
  if (metrics_) metrics_->CountStream(region ? "shm" : "grpc");
  auto* reactor = new DistillReactor(this, PeerHost(context->peer()), rpc::CredentialsOf(*context),
                                     std::move(region));
  if (offered) reactor->StartSendInitialMetadata();
  return reactor;
}

absl::Status TeacherServiceImpl::AuthorizeJob(const std::string& job,
                                              const rpc::CallCredentials& credentials) {
  if (auth_.open()) return absl::OkStatus();
  std::string reason;
  absl::Status st = auth_.Check(credentials, rpc::Role::kJob, job, &reason);
  if (!st.ok() && metrics_) metrics_->CountAuthRefusal(reason);
  return st;
}

void TeacherServiceImpl::Handle(const DistillRequest& request, std::shared_ptr<SharedRegion> region,
                                AnswerFn answer) {
  const absl::Time began = absl::Now();
  if (metrics_) metrics_->AddReceivedBytes(static_cast<int64_t>(request.ByteSizeLong()));
  const uint64_t id = request.micro_batch_id();
  absl::Status valid = ValidateDistillRequest(request, limits_, region.get());
  torch::Tensor from_region;
  if (valid.ok() && request.has_payload_shm()) valid = ReadRegion(request, region, &from_region);
  if (!valid.ok()) {
    if (metrics_) metrics_->CountRequest(valid.code());
    answer(ErrorAnswer(id, valid));
    return;
  }
  if (request.has_logits_shm()) {
    // Every copy of the answer (this one, or the first computation's for a
    // repeated id) is written to this request's own range.
    answer = [region, range = request.logits_shm(), id, inner = std::move(answer)](Answer a) {
      if (a->code() != 0) {
        inner(std::move(a));
        return;
      }
      absl::Status st = region->Write(static_cast<int64_t>(range.offset()), a->logits().data(),
                                      static_cast<int64_t>(a->logits().size()));
      inner(st.ok() ? WithoutLogits(*a) : ErrorAnswer(id, st));
    };
  }
  const absl::string_view payload =
      from_region.defined() ? absl::string_view(static_cast<const char*>(from_region.data_ptr()),
                                                static_cast<size_t>(from_region.nbytes()))
                            : absl::string_view(request.payload());
  const uint64_t digest = RequestDigest(request, payload);
  if (region && from_region.defined()) {
    // Read in place: a shrink racing with the digest turned the bytes to zeros.
    if (absl::Status intact = region->Intact(); !intact.ok()) {
      if (metrics_) metrics_->CountRequest(intact.code());
      answer(ErrorAnswer(id, intact));
      return;
    }
  }
  const std::string& job = request.job_id();
  Answer cached;
  switch (cache_.Begin(job, id, digest, answer, &cached)) {
    case ResultCache::Lookup::kMismatch: {
      const absl::Status reused = absl::InvalidArgumentError(absl::StrCat(
          "micro_batch_id: ", id, " was already used by job '", job,
          "' for a different request (other payload, indices or shape); ids must be unique"));
      if (metrics_) metrics_->CountRequest(reused.code());
      answer(ErrorAnswer(id, reused));
      return;
    }
    case ResultCache::Lookup::kWaiting:
      return;
    case ResultCache::Lookup::kDone:
      if (metrics_) metrics_->CountRequest(absl::StatusCode::kOk);
      answer(cached);
      return;
    case ResultCache::Lookup::kNew:
      break;
  }
  absl::StatusOr<WorkItem> item = Decode(request, from_region);
  const double decode_s = absl::ToDoubleSeconds(absl::Now() - began);
  if (metrics_) metrics_->ObserveStage(TeacherMetrics::ServerStage::kDecode, decode_s);
  absl::Status st = item.status();
  if (st.ok()) {
    if (metrics_) metrics_->AddInFlight(1);
    st = batcher_->Submit(std::move(*item), [this, job, id, decode_s](WorkResult r) {
      if (metrics_) metrics_->AddInFlight(-1);
      Finish(job, id, r.status, &r, decode_s);
    });
    if (!st.ok() && metrics_) metrics_->AddInFlight(-1);
  }
  if (!st.ok()) Finish(job, id, st, nullptr, decode_s);
}

absl::Status TeacherServiceImpl::ReadRegion(const DistillRequest& request,
                                            const std::shared_ptr<SharedRegion>& region,
                                            torch::Tensor* patches) const {
  const int64_t offset = static_cast<int64_t>(request.payload_shm().offset());
  const int64_t bytes = static_cast<int64_t>(request.payload_shm().size());
  const std::vector<int64_t> shape = {request.micro_batch_size(), request.kept_patches(),
                                      engine_->config().patch_dim()};
  const torch::Dtype dtype = proto::WireTorchDtype(request.payload_dtype());
  if (region->page_locked()) {
    // In place: the device reads the region by DMA, and the tensor keeps
    // the region mapped until it is done with it. The student can still
    // change these bytes until then, which spoils only its own answer.
    MKD_ASSIGN_OR_RETURN(const char* view, region->View(offset, bytes));
    return CatchTorch("reading payload_shm", [&] {
      *patches = torch::from_blob(
          const_cast<char*>(view), shape, [region](void*) {}, torch::TensorOptions().dtype(dtype));
    });
  }
  // A copy into memory of ours (pinned where the engine wants it): what is
  // digested and computed cannot change under us.
  MKD_RETURN_IF_ERROR(
      CatchTorch("reading payload_shm", [&] { *patches = engine_->HostEmpty(shape, dtype); }));
  return region->Read(offset, bytes, patches->data_ptr());
}

absl::StatusOr<WorkItem> TeacherServiceImpl::Decode(const DistillRequest& request,
                                                    torch::Tensor payload) const {
  // Whole images are cut to their kept patches here, so the batcher and
  // the engine only ever see [b, k, C*p*p].
  const ViTConfig& m = engine_->config();
  WorkItem item;
  item.job_id = request.job_id();
  item.weight = request.job_weight() > 0 ? request.job_weight() : 1.0;
  item.features = request.want_features();
  if (request.timeout_ms() > 0)
    item.deadline = absl::Now() + absl::Milliseconds(request.timeout_ms());
  MKD_ASSIGN_OR_RETURN(item.idx,
                       proto::DecodeIndices(request.kept_indices(), request.micro_batch_size(),
                                            request.kept_patches()));
  const bool images = request.payload_kind() == maskedkd::v1::PAYLOAD_KIND_IMAGES;
  std::vector<int64_t> shape =
      images
          ? std::vector<int64_t>{request.micro_batch_size(), m.in_chans, m.img_size, m.img_size}
          : std::vector<int64_t>{request.micro_batch_size(), request.kept_patches(), m.patch_dim()};
  if (payload.defined()) {  // Read from shared memory already.
    item.patches = std::move(payload);
    return item;
  }
  if (!images) {
    // Kept patches stay in the wire dtype until the engine's device, in
    // memory it copies from without staging (pinned on CUDA).
    MKD_RETURN_IF_ERROR(CatchTorch("decoding the payload", [&] {
      item.patches = engine_->HostEmpty(shape, proto::WireTorchDtype(request.payload_dtype()));
    }));
    MKD_RETURN_IF_ERROR(proto::DecodeWireFloatsInto(request.payload(), request.payload_dtype(),
                                                    item.patches, "payload"));
    return item;
  }
  MKD_ASSIGN_OR_RETURN(
      torch::Tensor whole,
      proto::DecodeFloats(request.payload(), request.payload_dtype(), shape, "payload"));
  MKD_RETURN_IF_ERROR(CatchTorch(
      "cutting patches", [&] { item.patches = CutPatches(whole, item.idx, m.patch_size); }));
  return item;
}

void TeacherServiceImpl::Finish(const std::string& job, uint64_t id, const absl::Status& status,
                                WorkResult* result, double decode_seconds) {
  Answer answer;
  if (!status.ok()) {
    if (metrics_) metrics_->CountRequest(status.code());
    auto r = std::const_pointer_cast<DistillResponse>(ErrorAnswer(id, status));
    if (result) r->set_queue_seconds(result->queue_seconds);
    answer = r;
  } else {
    auto r = std::make_shared<DistillResponse>();
    const absl::Time encoding = absl::Now();
    // Encoding runs LibTorch on the batcher's thread: a throw here must
    // become this micro-batch's error answer, not escape into the batcher.
    absl::Status encoded = CatchTorch("encoding the answer", [&] {
      r->set_micro_batch_id(id);
      r->set_logits_dtype(maskedkd::v1::DTYPE_F32);
      for (int64_t d : result->output.logits.sizes()) r->add_logits_shape(d);
      r->set_logits(proto::EncodeFloats(result->output.logits, maskedkd::v1::DTYPE_F32));
      if (result->output.features.defined()) {
        for (int64_t d : result->output.features.sizes()) r->add_features_shape(d);
        r->set_features(proto::EncodeFloats(result->output.features, maskedkd::v1::DTYPE_F32));
      }
    });
    if (metrics_) metrics_->CountRequest(encoded.code());
    if (!encoded.ok()) {
      cache_.Complete(job, id, ErrorAnswer(id, encoded));
      return;
    }
    r->set_queue_seconds(result->queue_seconds);
    r->set_compute_seconds(result->compute_seconds);
    r->set_batched_with(result->batched_with);
    r->set_decode_seconds(decode_seconds);
    const double encode_s = absl::ToDoubleSeconds(absl::Now() - encoding);
    r->set_encode_seconds(encode_s);
    if (metrics_) metrics_->ObserveStage(TeacherMetrics::ServerStage::kEncode, encode_s);
    answer = r;
  }
  cache_.Complete(job, id, std::move(answer));
}

}  // namespace mkd::teacher
