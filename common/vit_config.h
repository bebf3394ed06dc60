// ViT architecture description: named presets matching timm, YAML loading
// with timm's constructor argument names, and validation. Torch-free so the
// coordinator and the protocol code can reason about models without LibTorch.
#ifndef MKD_COMMON_VIT_CONFIG_H_
#define MKD_COMMON_VIT_CONFIG_H_

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mkd {

struct ViTConfig {
  std::string name = "custom";  // Preset name, or "custom".
  int img_size = 224;
  int patch_size = 16;
  int in_chans = 3;
  int embed_dim = 768;
  int depth = 12;
  int num_heads = 12;
  double mlp_ratio = 4.0;
  int num_classes = 1000;
  bool qkv_bias = true;
  // LayerScale init value (DeiT-III); absent means no LayerScale.
  std::optional<double> init_values;
  // DeiT-III: positional embedding covers patches only; CLS gets none.
  bool no_embed_class = false;
  // DeiT distillation token (and `head_dist`).
  bool dist_token = false;
  double drop_path_rate = 0.0;
  // Input normalisation, per channel; in_chans entries.
  std::vector<double> mean = {0.485, 0.456, 0.406};
  std::vector<double> std = {0.229, 0.224, 0.225};

  int grid_size() const { return img_size / patch_size; }
  int num_patches() const { return grid_size() * grid_size(); }
  int num_prefix_tokens() const { return dist_token ? 2 : 1; }
  int head_dim() const { return embed_dim / num_heads; }
  int patch_dim() const { return in_chans * patch_size * patch_size; }
  int mlp_hidden() const { return static_cast<int>(embed_dim * mlp_ratio); }
};

// Checks every field and their combinations (divisibility, positivity,
// mean/std length). kInvalidArgument names the offending key.
absl::Status ValidateViTConfig(const ViTConfig& config);

// The names accepted by ViTPreset().
std::vector<std::string> ViTPresetNames();

// A timm preset such as "deit_small_patch16_224". kNotFound lists the
// known names.
absl::StatusOr<ViTConfig> ViTPreset(const std::string& name);

// Parses YAML text whose keys are timm's constructor argument names, plus
// `mean`, `std` and `preset` (a preset to start from; the other keys then
// override it key by key). Unknown keys and ill-typed values are
// kInvalidArgument errors naming the key. The result is validated.
absl::StatusOr<ViTConfig> ParseViTConfigYaml(const std::string& yaml_text);

// `spec` is a preset name or a path to a YAML file (anything ending in
// .yaml/.yml or containing '/').
absl::StatusOr<ViTConfig> ResolveViTConfig(const std::string& spec);

}  // namespace mkd

#endif  // MKD_COMMON_VIT_CONFIG_H_
