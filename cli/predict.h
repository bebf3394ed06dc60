// `mkd predict`: run a ViT on a .npy batch, fully or on kept tokens, and
// write logits (and optionally the student saliency) as .npy.
#ifndef MKD_CLI_PREDICT_H_
#define MKD_CLI_PREDICT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mkd::cli {

struct PredictOptions {
  std::string model;                        // Preset name or model YAML path.
  std::string weights;                      // safetensors path.
  std::string images;                       // float32 [B, C, H, W] .npy, already normalised.
  std::optional<std::string> keep;          // int64 [B, k] .npy: kept patch indices.
  std::optional<int> num_classes;           // Overrides the model config.
  std::string out;                          // float32 [B, classes] .npy.
  std::optional<std::string> saliency_out;  // float32 [B, N] .npy.
  int threads = 0;                          // 0: one per core.
  int batch_size = 64;                      // Images per forward pass.
};

// Parses the flags after "predict". kInvalidArgument names a bad flag.
absl::StatusOr<PredictOptions> ParsePredictFlags(const std::vector<std::string>& args);

// The flag summary for `mkd predict --help`.
std::string PredictUsage();

// Runs the prediction. Every bad input (files, shapes, dtypes, indices,
// weights) is an error status naming what is wrong; nothing is written
// unless the whole run succeeds.
absl::Status RunPredict(const PredictOptions& options);

}  // namespace mkd::cli

#endif  // MKD_CLI_PREDICT_H_
