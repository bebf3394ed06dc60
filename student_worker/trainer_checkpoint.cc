// The trainer's state on disk: checkpoints written as a run goes and after
// a failed step, and --resume's restore of the newest readable one.
#include <filesystem>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "common/vit_weights.h"
#include "student_worker/checkpoint.h"
#include "student_worker/trainer.h"

namespace mkd::student {
namespace {

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
      MKD_LOG(INFO) << RankTag() << "resumed from step " << step_ << " (epoch " << epoch_ + 1
                    << ", batch " << next_batch_ << ")";
      return absl::OkStatus();
    }
    if (absl::IsFailedPrecondition(st)) return st;
    MKD_LOG(WARNING) << RankTag() << "resume: skipping the checkpoint of step " << s << ": "
                     << st.message();
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

}  // namespace mkd::student
