// Training checkpoints in `<out_dir>/checkpoints/`:
//   step_XXXXXXXX.model.safetensors  the student, timm keys (loads in
//                                    `mkd predict` and in timm)
//   step_XXXXXXXX.state.safetensors  optimizer moments, RNG state, counters
//   latest                           the step of the newest complete pair
// Each file is written atomically (temp + fsync + rename) and `latest` only
// after both, so a crash at any point leaves the previous checkpoint whole.
#ifndef MKD_STUDENT_WORKER_CHECKPOINT_H_
#define MKD_STUDENT_WORKER_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/safetensors.h"

namespace mkd::student {

struct CheckpointPaths {
  std::string model;
  std::string state;
};

CheckpointPaths CheckpointFor(const std::string& out_dir, int64_t step);

// Writes `model` and `state` for `step`, points `latest` at it, then deletes
// all but the newest `keep` checkpoints.
absl::Status WriteCheckpoint(const std::string& out_dir, int64_t step, const SafetensorsFile& model,
                             const SafetensorsFile& state, int keep);

// Steps with both files on disk, newest first.
std::vector<int64_t> CheckpointSteps(const std::string& out_dir);

// The step `latest` names, or nullopt if there is no checkpoint yet.
// kDataLoss if `latest` is unreadable or names files that are missing.
absl::StatusOr<std::optional<int64_t>> LatestCheckpoint(const std::string& out_dir);

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_CHECKPOINT_H_
