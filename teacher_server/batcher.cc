#include "teacher_server/batcher.h"

#include <torch/types.h>

#include "absl/strings/str_cat.h"
#include "common/flops.h"
#include "common/tensor_util.h"

namespace mkd::teacher {
namespace {

BatchQueueOptions QueueOptions(const BatcherConfig& config, bool cuda, absl::Duration job_idle) {
  const BatcherConfig c = ResolveBatcherDefaults(config, cuda);
  BatchQueueOptions o;
  o.max_tokens_per_batch = c.max_tokens_per_batch;
  o.max_queue_delay = absl::Microseconds(c.max_queue_delay_us);
  o.max_queued = c.max_queued;
  o.max_queued_per_job = c.max_queued_per_job;
  o.job_idle = job_idle;
  o.fair_share_grace = absl::Milliseconds(c.fair_share_grace_ms);
  return o;
}

}  // namespace

Batcher::Batcher(Engine* engine, const BatcherConfig& config, absl::Duration job_idle,
                 TeacherMetrics* metrics)
    : engine_(engine),
      metrics_(metrics),
      model_(engine->config()),
      queue_(QueueOptions(config, engine->device().rfind("cuda", 0) == 0, job_idle)),
      thread_(
          "mkd-batcher", [this] { Loop(); },
          [this](const absl::Status& s) {
            if (!s.ok()) FailPending(s);
          }) {
  if (metrics_ != nullptr) {
    const bool cuda = engine->device().rfind("cuda", 0) == 0;
    metrics_->SetBatchTokenBudget(ResolveBatcherDefaults(config, cuda).max_tokens_per_batch);
  }
}

Batcher::~Batcher() { Shutdown(); }

absl::Status Batcher::Submit(WorkItem item, WorkDone done) {
  QueuedWork w;
  w.job_id = item.job_id;
  w.weight = item.weight;
  w.images = item.idx.size(0);
  w.kept_patches = item.idx.size(1);
  w.enqueued = absl::Now();
  w.deadline = item.deadline;
  {
    MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("teacher is shutting down");
    absl::StatusOr<uint64_t> ticket = queue_.Push(std::move(w));
    if (!ticket.ok()) return ticket.status();
    pending_.emplace(*ticket, Pending{std::move(item), std::move(done), absl::Now()});
    if (metrics_) metrics_->SetQueued(queue_.size());
  }
  wake_.Signal();
  return absl::OkStatus();
}

void Batcher::SetActiveStreams(int64_t n) {
  {
    MutexLock lock(&mu_);
    queue_.set_active_streams(n);
  }
  wake_.Signal();  // Waiting work may be due now.
}

bool Batcher::accepting() {
  MutexLock lock(&mu_);
  return !stopping_;
}

void Batcher::Shutdown() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  wake_.Signal();
  thread_.Join().IgnoreError();  // A failure was answered by FailPending.
}

void Batcher::FailPending(const absl::Status& why) {
  std::vector<Pending> failed;
  {
    MutexLock lock(&mu_);
    stopping_ = true;  // Submit refuses from now on.
    for (auto& [ticket, p] : pending_) failed.push_back(std::move(p));
    pending_.clear();
  }
  for (Pending& p : failed) {
    WorkResult r;
    r.status = absl::UnavailableError(absl::StrCat("teacher batcher died: ", why.message()));
    p.done(std::move(r));
  }
}

// What runs under mu_ here is queue bookkeeping; the engine's phases, which
// can throw, run unlocked and catch what they throw. So a thread that dies
// anyway (FailPending) does not die holding mu_.
void Batcher::Loop() {
  mu_.Lock();
  // The batch whose forward pass the device is running. The next batch is
  // formed and uploaded before this one is waited for, so on a GPU its
  // host-to-device copy overlaps this one's compute.
  std::optional<InFlight> running;
  while (true) {
    const absl::Time now = absl::Now();
    // Work past its deadline is answered without being computed: its
    // student has stopped waiting, so the FLOPs would be wasted.
    std::vector<Pending> expired;
    for (QueuedWork& w : queue_.TakeExpired(now)) {
      auto it = pending_.find(w.ticket);
      expired.push_back(std::move(it->second));
      pending_.erase(it);
    }
    absl::Time wake_at;
    std::vector<QueuedWork> batch = queue_.TakeBatch(now, stopping_, &wake_at);
    if (metrics_) metrics_->SetQueued(queue_.size());
    if (!expired.empty() || !batch.empty()) {
      mu_.Unlock();
      for (Pending& p : expired) {
        WorkResult r;
        r.status = absl::DeadlineExceededError("deadline passed while queued; not computed");
        r.queue_seconds = absl::ToDoubleSeconds(now - p.enqueued);
        p.done(std::move(r));
      }
      if (!batch.empty()) {
        InFlight next = Upload(std::move(batch));
        if (running) Complete(std::move(*running));
        running = Launch(std::move(next));
      }
      mu_.Lock();
      continue;
    }
    if (running) {  // Nothing else is ready: wait for the device.
      mu_.Unlock();
      Complete(std::move(*running));
      running.reset();
      mu_.Lock();
      continue;
    }
    if (stopping_ && queue_.size() == 0) break;
    if (wake_at == absl::InfiniteFuture()) {
      wake_.Wait(&mu_);
    } else {
      wake_.WaitWithDeadline(&mu_, wake_at);
    }
  }
  mu_.Unlock();
}

Batcher::InFlight Batcher::Upload(std::vector<QueuedWork> batch) {
  InFlight f;
  {
    MutexLock lock(&mu_);
    for (const QueuedWork& w : batch) {
      auto it = pending_.find(w.ticket);
      f.work.push_back(std::move(it->second));
      pending_.erase(it);
    }
  }
  f.start = absl::Now();
  std::vector<torch::Tensor> patches, idx;
  for (const Pending& p : f.work) {
    patches.push_back(p.item.patches);
    idx.push_back(p.item.idx);
    f.features = f.features || p.item.features;
    f.images += p.item.idx.size(0);
    f.tokens += p.item.idx.size(0) * (p.item.idx.size(1) + 1);
  }
  f.kept_patches = idx[0].size(1);  // One bucket: every item has the same k.
  struct Observe {                  // Also when the upload fails.
    TeacherMetrics* metrics;
    absl::Time start = absl::Now();
    ~Observe() {
      if (metrics) {
        metrics->ObserveStage(TeacherMetrics::ServerStage::kAssemble,
                              absl::ToDoubleSeconds(absl::Now() - start));
      }
    }
  } observe{metrics_};
  try {
    absl::StatusOr<EngineInput> in = engine_->Upload(patches, idx);
    if (in.ok()) {
      f.input = std::move(*in);
      f.uploaded = true;
    } else {
      f.output = in.status();
    }
  } catch (const std::exception& e) {  // No exception leaves the batcher's thread.
    f.output = absl::InternalError(e.what());
  }
  return f;
}

Batcher::InFlight Batcher::Launch(InFlight f) {
  if (!f.uploaded) return f;  // Its upload failed; Complete answers the error.
  const absl::Time start = absl::Now();
  try {
    f.output = engine_->Launch(std::move(f.input), f.features);
  } catch (const std::exception& e) {
    f.output = absl::InternalError(e.what());
  }
  f.forward_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return f;
}

void Batcher::Complete(InFlight f) {
  absl::StatusOr<EngineOutput> out = std::move(f.output);
  if (out.ok()) {
    const absl::Time start = absl::Now();
    try {
      out = engine_->Collect(std::move(*out));
    } catch (const std::exception& e) {
      out = absl::InternalError(e.what());
    }
    f.forward_seconds += absl::ToDoubleSeconds(absl::Now() - start);
    if (metrics_) metrics_->ObserveStage(TeacherMetrics::ServerStage::kForward, f.forward_seconds);
  }
  const double compute = absl::ToDoubleSeconds(absl::Now() - f.start);
  if (metrics_ && out.ok()) {
    const double spent = f.images * ViTForwardFlops(model_, f.kept_patches);
    const double full = f.images * ViTForwardFlops(model_, model_.num_patches());
    metrics_->ObserveBatch(compute, f.images, f.tokens, spent, full - spent);
    if (std::optional<int64_t> peak = engine_->PeakMemoryBytes()) {
      metrics_->SetDeviceMemoryPeakBytes(*peak);
    }
  }
  int64_t row = 0;
  for (Pending& p : f.work) {
    const int64_t b = p.item.idx.size(0);
    WorkResult r;
    r.queue_seconds = absl::ToDoubleSeconds(f.start - p.enqueued);
    r.compute_seconds = compute;
    r.batched_with = static_cast<int>(f.work.size());
    if (out.ok()) {
      try {  // No exception leaves the batcher's thread.
        r.output.logits = out->logits.narrow(0, row, b);
        if (p.item.features) r.output.features = out->features.narrow(0, row, b);
      } catch (const std::exception& e) {
        r.status = TorchErrorToStatus("slicing the batch's answer", e);
      }
    } else {
      r.status = out.status();
    }
    if (metrics_) {
      metrics_->ObserveQueueSeconds(r.queue_seconds);
      if (r.status.ok())
        metrics_->CountJobServedTokens(p.item.job_id, b * (p.item.idx.size(1) + 1));
    }
    row += b;
    p.done(std::move(r));
  }
}

}  // namespace mkd::teacher
