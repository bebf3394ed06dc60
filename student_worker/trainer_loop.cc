// Trainer: the epoch loop and evaluation. The step itself is in
// trainer_step.cc, checkpoints in trainer_checkpoint.cc, and what a run
// reports in step_log.h.
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/losses.h"
#include "common/metrics_http.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "common/vit_weights.h"
#include "student_worker/trainer.h"

namespace mkd::student {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

absl::Status Trainer::Train(bool resume) {
  if (resume) MKD_RETURN_IF_ERROR(Resume());
  if (resume && dp_) MKD_RETURN_IF_ERROR(AgreeOnResume());
  log_ = std::make_unique<StepLog>(RankTag(), world_size_);
  // One metrics.jsonl per job: rank 0's, with the summary over ranks.
  if (rank_ == 0) MKD_RETURN_IF_ERROR(log_->OpenJsonl(config_.run.out_dir, resume, step_));
  std::unique_ptr<MetricsHttpServer> http;
  if (!config_.run.metrics_listen.empty()) {
    // job_id, not job: Prometheus gives every series its scrape job.
    std::map<std::string, std::string> labels = {{"job_id", JobIdOf(config_)}};
    if (world_size_ > 1) labels["rank"] = std::to_string(rank_);  // One series per rank.
    metrics_ = std::make_unique<StudentMetrics>(labels);
    StudentMetrics* metrics = metrics_.get();
    http = std::make_unique<MetricsHttpServer>([metrics] { return metrics->Serialize(); });
    absl::StatusOr<int> port = http->Start(config_.run.metrics_listen);
    if (!port.ok()) return Annotate(port.status(), "config key 'run.metrics_listen'");
    MKD_LOG(INFO) << RankTag() << "metrics on port " << *port;
  }

  const int64_t stop_at =
      config_.run.max_steps > 0 ? std::min(total_steps_, config_.run.max_steps) : total_steps_;
  auto started = Clock::now();
  const int64_t first_step = step_;
  auto window_start = Clock::now();
  int64_t window_images = 0;
  while (epoch_ < config_.optim.epochs && step_ < stop_at) {
    train_loader_->StartEpoch(epoch_, next_batch_);
    // One batch ahead: the next batch's copy to the device is started
    // before this step's kernels, so it overlaps them (a no-op on the CPU).
    auto fetch = [&]() -> absl::StatusOr<std::optional<StagedBatch>> {
      auto batch = train_loader_->Next();
      if (!batch) return std::optional<StagedBatch>();
      if (!batch->ok()) return batch->status();
      std::optional<StagedBatch> staged;
      MKD_RETURN_IF_ERROR(
          CatchTorch("copying a batch", [&] { staged = Stage(std::move(**batch)); }));
      return staged;
    };
    MKD_ASSIGN_OR_RETURN(std::optional<StagedBatch> ahead, fetch());
    while (step_ < stop_at && ahead) {
      Batch batch;
      MKD_RETURN_IF_ERROR(
          CatchTorch("copying a batch", [&] { batch = Unstage(std::move(*ahead)); }));
      ahead.reset();
      if (step_ + 1 < stop_at) {
        MKD_ASSIGN_OR_RETURN(ahead, fetch());
      }
      skipped_ += batch.skipped;
      const StepStart start = Snapshot();
      absl::StatusOr<StepResult> stepped = StepOnDevice(batch);
      if (!stepped.ok()) return StepFailed(stepped.status(), start);
      const StepResult& r = *stepped;
      ++step_;
      if (metrics_) ObserveStep(r, batch.images.size(0));
      next_batch_ = batch.index + 1;
      window_images += batch.images.size(0);
      if (step_ % config_.run.log_every_steps == 0 || step_ == stop_at) {
        // Kernels run asynchronously on a GPU: the window ends when the
        // device has finished its work, not when the host queued it.
        SynchronizeDevice(device_);
        double secs = std::chrono::duration<double>(Clock::now() - window_start).count();
        double images_per_s = window_images / std::max(secs, 1e-9);
        MKD_ASSIGN_OR_RETURN(StepResult all, AcrossRanks(r, &images_per_s));
        double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
        double eta = elapsed / (step_ - first_step) * (stop_at - step_);
        log_->Step(ProgressForLog(/*after_epoch=*/false), all, images_per_s, eta,
                   teacher_ != nullptr,
                   scaler_->enabled() ? std::optional<double>(scaler_->scale()) : std::nullopt);
        window_start = Clock::now();
        window_images = 0;
      }
      if (config_.run.checkpoint_every_steps > 0 &&
          step_ % config_.run.checkpoint_every_steps == 0) {
        MKD_RETURN_IF_ERROR(SaveCheckpoint());
      }
    }
    if (next_batch_ >= steps_per_epoch_) {  // The epoch is complete.
      ++epoch_;
      next_batch_ = 0;
      const bool last = epoch_ == config_.optim.epochs;
      if (last ||
          (config_.run.eval_every_epochs > 0 && epoch_ % config_.run.eval_every_epochs == 0)) {
        MKD_ASSIGN_OR_RETURN(EvalResult e, Evaluate());
        log_->Eval(ProgressForLog(/*after_epoch=*/true), e);
        last_eval_ = e;
        last_eval_step_ = step_;
      }
      if (config_.run.checkpoint_every_steps == 0 || last) MKD_RETURN_IF_ERROR(SaveCheckpoint());
    }
  }
  if (step_ == stop_at && next_batch_ != 0)
    MKD_RETURN_IF_ERROR(SaveCheckpoint());  // Stopped mid-epoch.
  if (skipped_ > 0)
    MKD_LOG(WARNING) << RankTag() << "skipped " << skipped_ << " unreadable training examples";
  return absl::OkStatus();
}

StepLog::Progress Trainer::ProgressForLog(bool after_epoch) const {
  StepLog::Progress p;
  p.epoch = after_epoch ? epoch_ : epoch_ + 1;
  p.epochs = config_.optim.epochs;
  p.step = step_;
  p.total_steps = total_steps_;
  p.flops_spent = flops_spent_;
  p.flops_full = flops_full_;
  return p;
}

absl::StatusOr<EvalResult> Trainer::Evaluate() {
  EvalResult result;
  double loss_sum = 0;
  int64_t correct1 = 0, correct5 = 0;
  model_->eval();
  eval_loader_->StartEpoch(0);  // This rank's shard of the eval split.
  while (auto batch = eval_loader_->Next()) {
    if (!batch->ok()) return batch->status();
    const int64_t n = (*batch)->labels.size(0);
    MKD_RETURN_IF_ERROR(CatchTorch("evaluation", [&] {
      torch::NoGradGuard no_grad;
      const Batch b = Unstage(Stage(std::move(**batch)));  // On the device.
      torch::Tensor logits;
      {
        AutocastGuard autocast(device_, precision_);
        logits = model_->forward(b.images).to(torch::kFloat32);
      }
      const int64_t k = std::min<int64_t>(5, logits.size(1));
      torch::Tensor top = std::get<1>(logits.topk(k, 1));  // [b, k]
      torch::Tensor hit = top.eq(b.labels.unsqueeze(1));
      // One read from the device per batch: [loss * n, top-1 hits, top-5 hits].
      torch::Tensor sums = torch::stack({CrossEntropy(logits, b.labels) * n,
                                         hit.select(1, 0).sum().to(torch::kFloat32),
                                         hit.any(1).sum().to(torch::kFloat32)})
                               .to(torch::kCPU, torch::kFloat64);
      loss_sum += sums[0].item<double>();
      correct1 += static_cast<int64_t>(sums[1].item<double>());
      correct5 += static_cast<int64_t>(sums[2].item<double>());
    }));
    result.images += n;
  }
  if (dp_) {  // Sums over the ranks' shards: the whole split's figures.
    MKD_ASSIGN_OR_RETURN(
        std::vector<double> sums,
        dp_->SumOverRanks({loss_sum, static_cast<double>(correct1), static_cast<double>(correct5),
                           static_cast<double>(result.images)},
                          "summing the evaluation"));
    loss_sum = sums[0];
    correct1 = static_cast<int64_t>(sums[1]);
    correct5 = static_cast<int64_t>(sums[2]);
    result.images = static_cast<int64_t>(sums[3]);
  }
  if (result.images == 0) return absl::FailedPreconditionError("the eval split is empty");
  result.top1 = static_cast<double>(correct1) / result.images;
  result.top5 = static_cast<double>(correct5) / result.images;
  result.loss = loss_sum / result.images;
  return result;
}

absl::Status Trainer::LoadWeights(const std::string& path) {
  return LoadViTWeightsFile(*model_, path).status();
}

void Trainer::ObserveStep(const StepResult& r, int64_t images) {
  StepReport rep;
  rep.step = step_;
  rep.loss = r.loss;
  rep.micro_batches = teacher_ ? r.timings.micro_batches : 1;
  rep.step_s = r.timings.step_s;
  rep.images_per_s = r.timings.step_s > 0 ? images / r.timings.step_s : 0;
  rep.predicted_step_s = r.timings.predicted_step_s;
  rep.bubble = r.timings.step_s > 0 ? r.wait_s / r.timings.step_s : 0;
  rep.teacher_flops = r.flops;
  rep.teacher_flops_saved = r.flops_full - r.flops;
  rep.stages = r.stages;
  if (session_) {
    client::TeacherStats stats = session_->TakeStats();
    rep.round_trips_s = std::move(stats.round_trips_s);
    rep.retries = stats.retries;
    rep.failovers = stats.failovers;
  }
  metrics_->Observe(rep);
}

}  // namespace mkd::student
