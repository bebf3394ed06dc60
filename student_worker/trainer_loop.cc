// Trainer: the epoch loop, evaluation, checkpoints and logs.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/losses.h"
#include "common/metrics_http.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "common/vit_weights.h"
#include "nlohmann/json.hpp"
#include "student_worker/checkpoint.h"
#include "student_worker/trainer.h"

namespace mkd::student {
namespace {

// Drops the lines of `path` (metrics.jsonl) logged for steps after `step`:
// a run that died after its last checkpoint logged steps that its resumed
// run does again, and every step must be logged once. Lines without a
// step are kept. A missing file is fine (nothing was logged).
absl::Status DropLinesAfter(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return absl::OkStatus();
  std::string kept;
  bool dropped = false;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
        j["step"].get<int64_t>() > step) {
      dropped = true;
      continue;
    }
    kept += line + "\n";
  }
  if (!dropped) return absl::OkStatus();
  // Replaced whole (a crash leaves the old file or the new one).
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kept;
    if (!out.flush()) return absl::InternalError("cannot rewrite " + path);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError("cannot rewrite " + path + ": " + ec.message());
  return absl::OkStatus();
}

using Clock = std::chrono::steady_clock;

std::string Duration(double seconds) {
  auto s = static_cast<int64_t>(seconds);
  return s >= 3600 ? absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60)
                   : absl::StrFormat("%dm%02ds", s / 60, s % 60);
}

// A number from the checkpoint's metadata. Counters and the seed are read
// as integers, exactly: a double holds integers only up to 2^53, and a seed
// may be any 64-bit value.
template <typename T>
absl::StatusOr<T> MetaValue(const SafetensorsFile& f, const std::string& key) {
  auto it = f.metadata.find(key);
  T v;
  bool ok = it != f.metadata.end();
  if constexpr (std::is_floating_point_v<T>) {
    ok = ok && absl::SimpleAtod(it->second, &v);
  } else {
    ok = ok && absl::SimpleAtoi(it->second, &v);
  }
  if (!ok) return absl::DataLossError(absl::StrCat("checkpoint state lacks a numeric '", key, "'"));
  return v;
}

}  // namespace

absl::Status Trainer::Train(bool resume) {
  if (resume) MKD_RETURN_IF_ERROR(Resume());
  if (resume && dp_) MKD_RETURN_IF_ERROR(AgreeOnResume());
  if (rank_ == 0) {  // One log per job: rank 0's, with the summary over ranks.
    const std::string log = config_.run.out_dir + "/metrics.jsonl";
    if (resume) MKD_RETURN_IF_ERROR(DropLinesAfter(log, step_));
    jsonl_ = std::fopen(log.c_str(), resume ? "a" : "w");
    if (jsonl_ == nullptr)
      return absl::InternalError("cannot open metrics.jsonl in " + config_.run.out_dir);
  }
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
    std::printf("metrics on port %d\n", *port);
    std::fflush(stdout);
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
      absl::StatusOr<StepResult> stepped = TrainStep(batch);
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
        LogStep(all, images_per_s);
        double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
        double eta = elapsed / (step_ - first_step) * (stop_at - step_);
        std::printf("  eta %s\n", Duration(eta).c_str());
        std::fflush(stdout);
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
        LogEval(e);
        last_eval_ = e;
        last_eval_step_ = step_;
      }
      if (config_.run.checkpoint_every_steps == 0 || last) MKD_RETURN_IF_ERROR(SaveCheckpoint());
    }
  }
  if (step_ == stop_at && next_batch_ != 0)
    MKD_RETURN_IF_ERROR(SaveCheckpoint());  // Stopped mid-epoch.
  if (skipped_ > 0)
    std::printf("skipped %lld unreadable training examples\n", static_cast<long long>(skipped_));
  return absl::OkStatus();
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

Trainer::StepStart Trainer::Snapshot() const {
  StepStart s;
  s.cpu_rng = GetDefaultRngState(torch::kCPU);
  if (device_.is_cuda()) s.device_rng = GetDefaultRngState(device_);
  s.flops_spent = flops_spent_;
  s.flops_full = flops_full_;
  return s;
}

absl::Status Trainer::StepFailed(const absl::Status& why, const StepStart& start) {
  const absl::StatusCode c = why.code();
  const bool teacher_gone = teacher_ && (c == absl::StatusCode::kUnavailable ||
                                         c == absl::StatusCode::kDeadlineExceeded ||
                                         c == absl::StatusCode::kResourceExhausted);
  const bool peer_gone = dp_ && c == absl::StatusCode::kAborted;  // Another rank failed.
  if (!teacher_gone && !peer_gone) return why;
  // The weights and optimizer change only at a step's end, so this is the
  // last completed step exactly: --resume loses nothing.
  flops_spent_ = start.flops_spent;
  flops_full_ = start.flops_full;
  absl::Status saved = SaveCheckpoint(&start);
  if (!saved.ok())
    return Annotate(why, absl::StrCat("and the checkpoint failed too: ", saved.message()));
  if (rank_ != 0) return Annotate(why, absl::StrCat("step ", step_ + 1, " failed"));
  return Annotate(why, absl::StrCat("step ", step_ + 1, " failed; checkpoint of step ", step_,
                                    " written, --resume continues from it"));
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

absl::Status Trainer::SaveCheckpoint(const StepStart* start) {
  // Every rank holds the same weights and optimizer state: rank 0 writes.
  if (rank_ != 0) return absl::OkStatus();
  MKD_ASSIGN_OR_RETURN(SafetensorsFile model,
                       ViTStateDict(*model_, {{"mkd.step", std::to_string(step_)},
                                              {"mkd.model", config_.model_spec}}));
  SafetensorsFile state;
  optimizer_->SaveState(&state);
  MKD_ASSIGN_OR_RETURN(state.tensors["rng.torch"],
                       FromTensor(start ? start->cpu_rng : GetDefaultRngState(torch::kCPU)));
  if (device_.is_cuda()) {
    // Drop-path masks are drawn on the device: its generator resumes too.
    MKD_ASSIGN_OR_RETURN(state.tensors["rng.cuda"],
                         FromTensor(start ? start->device_rng : GetDefaultRngState(device_)));
  }
  scaler_->Save(&state);
  state.metadata["step"] = std::to_string(step_);
  state.metadata["epoch"] = std::to_string(epoch_);
  state.metadata["next_batch"] = std::to_string(next_batch_);
  state.metadata["seed"] = std::to_string(config_.seed);
  state.metadata["flops_spent"] = absl::StrFormat("%.17g", flops_spent_);
  state.metadata["flops_full"] = absl::StrFormat("%.17g", flops_full_);
  state.metadata["skipped"] = std::to_string(skipped_);
  return WriteCheckpoint(config_.run.out_dir, step_, model, state, config_.run.keep_checkpoints);
}

absl::Status Trainer::Resume() {
  // `latest` first; if it (or its files) cannot be read, the older
  // checkpoints kept for exactly this, newest first. A checkpoint of
  // another run (seed mismatch) stops the resume instead.
  std::vector<int64_t> candidates;
  std::vector<std::string> skipped;
  absl::StatusOr<std::optional<int64_t>> latest = LatestCheckpoint(config_.run.out_dir);
  const std::vector<int64_t> on_disk = CheckpointSteps(config_.run.out_dir);
  if (!latest.ok()) {
    skipped.push_back(std::string(latest.status().message()));
  } else if (*latest) {
    candidates.push_back(**latest);
  } else if (on_disk.empty()) {
    return absl::OkStatus();  // Nothing to resume from: a fresh start.
  }
  for (int64_t s : on_disk) {
    if (candidates.empty() || s != candidates.front()) candidates.push_back(s);
  }
  for (int64_t s : candidates) {
    absl::Status st = RestoreCheckpoint(s);
    if (st.ok()) {
      std::printf("%sresumed from step %lld (epoch %lld, batch %lld)\n", RankTag().c_str(),
                  static_cast<long long>(step_), static_cast<long long>(epoch_ + 1),
                  static_cast<long long>(next_batch_));
      return absl::OkStatus();
    }
    if (absl::IsFailedPrecondition(st)) return st;
    std::printf("resume: skipping the checkpoint of step %lld: %s\n", static_cast<long long>(s),
                std::string(st.message()).c_str());
    std::fflush(stdout);
    skipped.push_back(absl::StrCat("step ", s, ": ", st.message()));
  }
  return absl::DataLossError(absl::StrCat("--resume: no readable checkpoint in ",
                                          config_.run.out_dir, "/checkpoints (",
                                          absl::StrJoin(skipped, "; "), ")"));
}

absl::Status Trainer::RestoreCheckpoint(int64_t step) {
  CheckpointPaths paths = CheckpointFor(config_.run.out_dir, step);
  MKD_RETURN_IF_ERROR(LoadViTWeightsFile(*model_, paths.model).status());
  MKD_ASSIGN_OR_RETURN(SafetensorsFile state, ReadSafetensors(paths.state));
  MKD_ASSIGN_OR_RETURN(uint64_t seed, MetaValue<uint64_t>(state, "seed"));
  if (seed != config_.seed) {
    return absl::FailedPreconditionError(absl::StrCat(paths.state, ": written with seed ", seed,
                                                      ", config has ", config_.seed,
                                                      "; resume needs the same seed"));
  }
  MKD_RETURN_IF_ERROR(optimizer_->LoadState(state));
  auto rng = state.tensors.find("rng.torch");
  if (rng == state.tensors.end()) return absl::DataLossError(paths.state + ": no rng.torch");
  MKD_ASSIGN_OR_RETURN(torch::Tensor rng_state, ToTensor(rng->second));
  MKD_RETURN_IF_ERROR(
      CatchTorch("restoring the RNG", [&] { SetDefaultRngState(torch::kCPU, rng_state); }));
  // A checkpoint moves between devices: a CUDA generator's state is only
  // restored on CUDA (a CPU run, or a CUDA run resuming a CPU checkpoint,
  // keeps its freshly seeded device generator).
  if (auto cuda = state.tensors.find("rng.cuda");
      cuda != state.tensors.end() && device_.is_cuda()) {
    MKD_ASSIGN_OR_RETURN(torch::Tensor cuda_state, ToTensor(cuda->second));
    MKD_RETURN_IF_ERROR(
        CatchTorch("restoring the CUDA RNG", [&] { SetDefaultRngState(device_, cuda_state); }));
  }
  MKD_RETURN_IF_ERROR(scaler_->Load(state));
  MKD_ASSIGN_OR_RETURN(step_, MetaValue<int64_t>(state, "step"));
  MKD_ASSIGN_OR_RETURN(epoch_, MetaValue<int64_t>(state, "epoch"));
  MKD_ASSIGN_OR_RETURN(next_batch_, MetaValue<int64_t>(state, "next_batch"));
  MKD_ASSIGN_OR_RETURN(flops_spent_, MetaValue<double>(state, "flops_spent"));
  MKD_ASSIGN_OR_RETURN(flops_full_, MetaValue<double>(state, "flops_full"));
  MKD_ASSIGN_OR_RETURN(skipped_, MetaValue<int64_t>(state, "skipped"));
  return absl::OkStatus();
}

void Trainer::LogStep(const StepResult& r, double images_per_s) {
  std::printf("%sepoch %lld/%d step %lld/%lld loss %.4f ce %.4f kd %.4f lr %.2e img/s %.1f",
              RankTag().c_str(), static_cast<long long>(epoch_ + 1), config_.optim.epochs,
              static_cast<long long>(step_), static_cast<long long>(total_steps_), r.loss, r.ce,
              r.kd, r.lr, images_per_s);
  if (teacher_) {
    std::printf(" k %lld teacher GFLOPs %.1f (saved %.1f)", static_cast<long long>(r.kept_tokens),
                flops_spent_ / 1e9, (flops_full_ - flops_spent_) / 1e9);
    // Pipelining: m, the step as measured and as the pool's plan predicted
    // it, and how much of it the student spent waiting for answers.
    const double bubble = r.timings.step_s > 0 ? r.wait_s / r.timings.step_s : 0;
    std::printf(" m %d step %.3fs", r.timings.micro_batches, r.timings.step_s);
    if (r.timings.predicted_step_s > 0)
      std::printf(" (predicted %.3fs)", r.timings.predicted_step_s);
    std::printf(" bubble %.0f%%", 100 * bubble);
  }
  if (scaler_->enabled())
    std::printf(" scale %.0f%s", scaler_->scale(), r.skipped ? " (skipped)" : "");
  nlohmann::json j = {{"type", "train"},
                      {"step", step_},
                      {"epoch", epoch_ + 1},
                      {"loss", r.loss},
                      {"time", absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch())},
                      {"ce", r.ce},
                      {"kd", r.kd},
                      {"lr", r.lr},
                      {"img_per_s", images_per_s},
                      {"kept_tokens", r.kept_tokens},
                      {"teacher_flops", flops_spent_},
                      {"teacher_flops_full", flops_full_}};
  if (world_size_ > 1) j["ranks"] = world_size_;
  if (teacher_) {
    j["micro_batches"] = r.timings.micro_batches;
    j["step_seconds"] = r.timings.step_s;
    j["predicted_step_seconds"] = r.timings.predicted_step_s;
    j["bubble"] = r.timings.step_s > 0 ? r.wait_s / r.timings.step_s : 0;
    // This step's stages, means over its micro-batches (this rank's).
    const StageMeans means = MeanOverMicroBatches(r.stages);
    nlohmann::json stages = nlohmann::json::object();
    for (mkd::Stage s : AllStages()) {
      if (means.mean.has(s)) stages[std::string(StageName(s))] = means.mean.get(s);
    }
    j["stages"] = stages;
  }
  AppendJson(j.dump());
}

void Trainer::LogEval(const EvalResult& e) {
  std::printf("%seval epoch %lld: top1 %.2f%% top5 %.2f%% loss %.4f (%lld images)\n",
              RankTag().c_str(), static_cast<long long>(epoch_), 100 * e.top1, 100 * e.top5, e.loss,
              static_cast<long long>(e.images));
  std::fflush(stdout);
  nlohmann::json j = {{"type", "eval"},
                      {"step", step_},
                      {"epoch", epoch_},
                      {"top1", e.top1},
                      {"top5", e.top5},
                      {"loss", e.loss},
                      {"images", e.images},
                      {"teacher_flops", flops_spent_},
                      {"teacher_flops_full", flops_full_}};
  AppendJson(j.dump());
}

void Trainer::AppendJson(const std::string& line) {
  if (jsonl_ == nullptr) return;
  std::fprintf(jsonl_, "%s\n", line.c_str());
  std::fflush(jsonl_);
}

}  // namespace mkd::student
