#include "common/vit_config.h"

#include <cmath>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"

namespace mkd {
namespace {

absl::Status BadKey(absl::string_view key, absl::string_view why) {
  return ConfigKeyError("model config", key, why);
}

ViTConfig Make(std::string name, int patch, int dim, int depth, int heads, bool deit3) {
  ViTConfig c;
  c.name = std::move(name);
  c.patch_size = patch;
  c.embed_dim = dim;
  c.depth = depth;
  c.num_heads = heads;
  if (deit3) {
    c.init_values = 1e-6;
    c.no_embed_class = true;
  }
  return c;
}

// The presets, as timm's model registry defines them.
const std::vector<ViTConfig>& Presets() {
  static const auto* presets = new std::vector<ViTConfig>{
      Make("deit_tiny_patch16_224", 16, 192, 12, 3, false),
      Make("deit_small_patch16_224", 16, 384, 12, 6, false),
      Make("deit_base_patch16_224", 16, 768, 12, 12, false),
      Make("deit3_small_patch16_224", 16, 384, 12, 6, true),
      Make("deit3_medium_patch16_224", 16, 512, 12, 8, true),
      Make("deit3_base_patch16_224", 16, 768, 12, 12, true),
      Make("deit3_large_patch16_224", 16, 1024, 24, 16, true),
      Make("deit3_huge_patch14_224", 14, 1280, 32, 16, true),
  };
  return *presets;
}

template <typename T>
absl::StatusOr<T> Scalar(const YAML::Node& node, absl::string_view key,
                         absl::string_view type_name) {
  return YamlScalar<T>(node, "model config", key, type_name);
}

absl::StatusOr<std::vector<double>> DoubleList(const YAML::Node& node, absl::string_view key) {
  return YamlList<double>(node, "model config", key, "numbers");
}

using Setter = std::function<absl::Status(const YAML::Node&, absl::string_view, ViTConfig*)>;

template <typename T, typename Field>
Setter Set(Field field, absl::string_view type_name) {
  return [field, type_name](const YAML::Node& n, absl::string_view key, ViTConfig* c) {
    MKD_ASSIGN_OR_RETURN(T v, Scalar<T>(n, key, type_name));
    c->*field = v;
    return absl::OkStatus();
  };
}

const std::map<std::string, Setter>& Setters() {
  static const auto* setters = new std::map<std::string, Setter>{
      {"img_size", Set<int>(&ViTConfig::img_size, "an integer")},
      {"patch_size", Set<int>(&ViTConfig::patch_size, "an integer")},
      {"in_chans", Set<int>(&ViTConfig::in_chans, "an integer")},
      {"embed_dim", Set<int>(&ViTConfig::embed_dim, "an integer")},
      {"depth", Set<int>(&ViTConfig::depth, "an integer")},
      {"num_heads", Set<int>(&ViTConfig::num_heads, "an integer")},
      {"mlp_ratio", Set<double>(&ViTConfig::mlp_ratio, "a number")},
      {"num_classes", Set<int>(&ViTConfig::num_classes, "an integer")},
      {"qkv_bias", Set<bool>(&ViTConfig::qkv_bias, "true or false")},
      {"no_embed_class", Set<bool>(&ViTConfig::no_embed_class, "true or false")},
      {"dist_token", Set<bool>(&ViTConfig::dist_token, "true or false")},
      {"drop_path_rate", Set<double>(&ViTConfig::drop_path_rate, "a number")},
      {"init_values",
       [](const YAML::Node& n, absl::string_view key, ViTConfig* c) -> absl::Status {
         if (n.IsNull()) {
           c->init_values.reset();
           return absl::OkStatus();
         }
         MKD_ASSIGN_OR_RETURN(double v, Scalar<double>(n, key, "a number or null"));
         c->init_values = v;
         return absl::OkStatus();
       }},
      {"mean",
       [](const YAML::Node& n, absl::string_view key, ViTConfig* c) -> absl::Status {
         MKD_ASSIGN_OR_RETURN(c->mean, DoubleList(n, key));
         return absl::OkStatus();
       }},
      {"std",
       [](const YAML::Node& n, absl::string_view key, ViTConfig* c) -> absl::Status {
         MKD_ASSIGN_OR_RETURN(c->std, DoubleList(n, key));
         return absl::OkStatus();
       }},
  };
  return *setters;
}

}  // namespace

absl::Status ValidateViTConfig(const ViTConfig& c) {
  // Positive, and small enough that the derived sizes (patches, patch
  // dimension, MLP width: ints) cannot overflow. Found by config_fuzz: an
  // mlp_ratio of 1e112 overflowed mlp_hidden() (undefined behaviour).
  // The bounds are far above any ViT (ViT-G: 1664 wide, 48 deep, 224 px).
  auto positive = [](absl::string_view key, double v, double max = 1 << 16) {
    if (!(v > 0)) return BadKey(key, "must be positive");
    if (!(v <= max)) return BadKey(key, absl::StrCat("must be at most ", max));
    return absl::OkStatus();
  };
  MKD_RETURN_IF_ERROR(positive("img_size", c.img_size, 1 << 14));
  MKD_RETURN_IF_ERROR(positive("patch_size", c.patch_size, 1024));
  MKD_RETURN_IF_ERROR(positive("in_chans", c.in_chans));
  MKD_RETURN_IF_ERROR(positive("embed_dim", c.embed_dim));
  MKD_RETURN_IF_ERROR(positive("depth", c.depth));
  MKD_RETURN_IF_ERROR(positive("num_heads", c.num_heads));
  MKD_RETURN_IF_ERROR(positive("mlp_ratio", c.mlp_ratio, 64));
  MKD_RETURN_IF_ERROR(positive("num_classes", c.num_classes, 1 << 24));
  MKD_RETURN_IF_ERROR(positive("in_chans", c.in_chans, 64));
  if (c.img_size % c.patch_size != 0) {
    return BadKey("patch_size",
                  absl::StrCat(c.patch_size, " does not divide img_size ", c.img_size));
  }
  if (c.embed_dim % c.num_heads != 0) {
    return BadKey("num_heads",
                  absl::StrCat(c.num_heads, " does not divide embed_dim ", c.embed_dim));
  }
  if (c.mlp_hidden() < 1) return BadKey("mlp_ratio", "gives an empty MLP");
  if (!(c.drop_path_rate >= 0 && c.drop_path_rate < 1)) {
    return BadKey("drop_path_rate", "must be in [0, 1)");
  }
  if (c.init_values && !std::isfinite(*c.init_values)) {
    return BadKey("init_values", "must be finite");
  }
  if (static_cast<int>(c.mean.size()) != c.in_chans) {
    return BadKey("mean",
                  absl::StrCat("has ", c.mean.size(), " entries, in_chans is ", c.in_chans));
  }
  if (static_cast<int>(c.std.size()) != c.in_chans) {
    return BadKey("std", absl::StrCat("has ", c.std.size(), " entries, in_chans is ", c.in_chans));
  }
  for (double s : c.std) {
    if (!(s > 0)) return BadKey("std", "entries must be positive");
  }
  return absl::OkStatus();
}

std::vector<std::string> ViTPresetNames() {
  std::vector<std::string> names;
  for (const auto& p : Presets()) names.push_back(p.name);
  return names;
}

absl::StatusOr<ViTConfig> ViTPreset(const std::string& name) {
  for (const auto& p : Presets()) {
    if (p.name == name) return p;
  }
  return absl::NotFoundError(absl::StrCat("unknown model preset '", name,
                                          "'; known: ", absl::StrJoin(ViTPresetNames(), ", ")));
}

absl::StatusOr<ViTConfig> ParseViTConfigYaml(const std::string& yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("model config is not valid YAML: ", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("model config must be a YAML mapping");
  ViTConfig config;  // Named "custom" unless it starts from a preset.
  if (const YAML::Node preset = root["preset"]) {
    MKD_ASSIGN_OR_RETURN(std::string name, Scalar<std::string>(preset, "preset", "a name"));
    auto base = ViTPreset(name);
    if (!base.ok()) return BadKey("preset", base.status().message());
    config = *base;
  }
  for (const auto& kv : root) {
    // As in FlattenConfig: a list or mapping used as a key names nothing
    // (and yaml-cpp would throw converting it).
    if (!kv.first.IsScalar()) {
      return absl::InvalidArgumentError(
          "model config has a key that is not a plain name (a list or mapping used as a key)");
    }
    const std::string key = kv.first.Scalar();
    if (key == "preset") continue;
    auto it = Setters().find(key);
    if (it == Setters().end()) return BadKey(key, "unknown key");
    MKD_RETURN_IF_ERROR(it->second(kv.second, key, &config));
  }
  // The ImageNet mean/std defaults are per RGB channel: a model with
  // another channel count that names no mean/std gets their average on
  // each channel, instead of an error about keys the user never wrote.
  for (auto [key, values] : {std::pair{"mean", &config.mean}, std::pair{"std", &config.std}}) {
    if (!root[key] && static_cast<int>(values->size()) != config.in_chans && config.in_chans > 0) {
      double avg = 0;
      for (double v : *values) avg += v;
      avg /= static_cast<double>(values->size());
      values->assign(static_cast<size_t>(config.in_chans), avg);
    }
  }
  MKD_RETURN_IF_ERROR(ValidateViTConfig(config));
  return config;
}

absl::StatusOr<ViTConfig> ResolveViTConfig(const std::string& spec) {
  bool is_file =
      absl::EndsWith(spec, ".yaml") || absl::EndsWith(spec, ".yml") || absl::StrContains(spec, '/');
  if (!is_file) return ViTPreset(spec);
  MKD_ASSIGN_OR_RETURN(std::string text, ReadFile(spec));
  auto config = ParseViTConfigYaml(text);
  if (!config.ok()) return Annotate(config.status(), spec);
  return config;
}

}  // namespace mkd
