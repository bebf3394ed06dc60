// Loading and saving ViT weights as safetensors, in timm's key layout.
//
// All foreign-layout conversion lives in CanonicalKey() (one filter, as in
// timm): `module.` / `model.` prefixes are stripped and the original
// DeiT-III names `gamma_1` / `gamma_2` become `ls1.gamma` / `ls2.gamma`.
// A positional embedding for a different patch grid is resized bicubically.
#ifndef MKD_COMMON_VIT_WEIGHTS_H_
#define MKD_COMMON_VIT_WEIGHTS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "common/vit.h"

namespace mkd {

struct LoadReport {
  std::vector<std::string> missing;     // Model keys absent from the file.
  std::vector<std::string> unexpected;  // File keys the model lacks.
  std::vector<std::string> mismatched;  // "key: file [..] vs model [..]".
  std::vector<std::string> resized;     // Keys adapted (pos_embed grid).
  bool clean() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
};

// Maps a checkpoint key onto timm's name for it.
std::string CanonicalKey(const std::string& key);

// Copies tensors from `file` into `model`'s parameters (casting floating
// dtypes to the parameter's). With `strict`, any missing, unexpected or
// mismatched key is a kInvalidArgument error listing them by name, and the
// model is left unchanged; otherwise matching keys are loaded and the
// report says what was skipped.
absl::StatusOr<LoadReport> LoadViTWeights(VisionTransformerImpl& model, const SafetensorsFile& file,
                                          bool strict = true);

// ReadSafetensors + LoadViTWeights; messages name the path.
absl::StatusOr<LoadReport> LoadViTWeightsFile(VisionTransformerImpl& model, const std::string& path,
                                              bool strict = true);

// The model's parameters as F32 host arrays under timm's keys, with
// `metadata` (plus "format": "pt", which timm's loader expects).
absl::StatusOr<SafetensorsFile> ViTStateDict(const VisionTransformerImpl& model,
                                             std::map<std::string, std::string> metadata = {});

// ViTStateDict + WriteSafetensors (atomic).
absl::Status SaveViTWeights(const VisionTransformerImpl& model, const std::string& path,
                            std::map<std::string, std::string> metadata = {});

// Resizes a positional embedding [1, prefix + h*w, D] (square grid) to
// [1, prefix + new_grid^2, D] by bicubic interpolation of the patch part;
// the first `prefix` rows are kept as they are.
absl::StatusOr<torch::Tensor> ResizePosEmbed(const torch::Tensor& pos_embed, int64_t prefix,
                                             int64_t new_grid);

}  // namespace mkd

#endif  // MKD_COMMON_VIT_WEIGHTS_H_
