#include "common/vit_weights.h"

#include <cmath>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"

namespace mkd {
namespace {

std::vector<int64_t> Sizes(const torch::Tensor& t) { return {t.sizes().begin(), t.sizes().end()}; }

std::string ListForMessage(const std::vector<std::string>& keys) {
  constexpr size_t kShown = 8;
  std::vector<std::string> shown(keys.begin(), keys.begin() + std::min(keys.size(), kShown));
  std::string out = absl::StrJoin(shown, ", ");
  if (keys.size() > kShown) absl::StrAppend(&out, ", ... (", keys.size(), " in all)");
  return out;
}

std::string ReportMessage(const LoadReport& r) {
  std::vector<std::string> parts;
  if (!r.missing.empty()) parts.push_back("missing keys: " + ListForMessage(r.missing));
  if (!r.unexpected.empty()) parts.push_back("unexpected keys: " + ListForMessage(r.unexpected));
  if (!r.mismatched.empty()) parts.push_back("shape mismatches: " + ListForMessage(r.mismatched));
  return absl::StrJoin(parts, "; ");
}

// Adapts a checkpoint tensor to the parameter it is loaded into, or
// explains why it cannot be.
absl::StatusOr<torch::Tensor> Adapt(const VisionTransformerImpl& model, const std::string& key,
                                    torch::Tensor value, const torch::Tensor& param,
                                    LoadReport* report) {
  if (!value.is_floating_point()) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": dtype ",
                                                   c10::toString(value.scalar_type()),
                                                   " cannot load into a float parameter"));
  }
  if (key == "pos_embed" && value.dim() == 3 && value.sizes() != param.sizes() &&
      value.size(2) == param.size(2)) {
    const ViTConfig& c = model.config();
    int64_t prefix = c.no_embed_class ? 0 : c.num_prefix_tokens();
    auto resized = ResizePosEmbed(value.to(torch::kFloat32), prefix, c.grid_size());
    if (!resized.ok())
      return absl::InvalidArgumentError(absl::StrCat(key, ": ", resized.status().message()));
    report->resized.push_back(key);
    value = *resized;
  }
  if (value.sizes() != param.sizes()) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": file ", ShapeString(Sizes(value)),
                                                   " vs model ", ShapeString(Sizes(param))));
  }
  return value.to(param.scalar_type());
}

}  // namespace

std::string CanonicalKey(const std::string& key) {
  absl::string_view k = key;
  // Wrappers: DataParallel/DDP ("module.") and EMA/trainer dicts ("model.").
  while (absl::ConsumePrefix(&k, "module.") || absl::ConsumePrefix(&k, "model.")) {
  }
  std::string out(k);
  if (absl::EndsWith(out, ".gamma_1")) {
    out = absl::StrCat(out.substr(0, out.size() - 8), ".ls1.gamma");
  } else if (absl::EndsWith(out, ".gamma_2")) {
    out = absl::StrCat(out.substr(0, out.size() - 8), ".ls2.gamma");
  }
  return out;
}

namespace {

absl::StatusOr<LoadReport> LoadViTWeightsUnguarded(VisionTransformerImpl& model,
                                                   const SafetensorsFile& file, bool strict) {
  LoadReport report;
  auto params = model.named_parameters(/*recurse=*/true);
  std::map<std::string, torch::Tensor> staged;
  std::set<std::string> found;  // Model keys present in the file, loadable or not.
  for (const auto& [raw_key, array] : file.tensors) {
    std::string key = CanonicalKey(raw_key);
    torch::Tensor* param = params.find(key);
    if (param == nullptr) {
      report.unexpected.push_back(raw_key);
      continue;
    }
    if (!found.insert(key).second) {
      return absl::InvalidArgumentError(absl::StrCat("two checkpoint keys map onto '", key, "'"));
    }
    MKD_ASSIGN_OR_RETURN(torch::Tensor value, ToTensor(array));
    auto adapted = Adapt(model, key, value, *param, &report);
    if (!adapted.ok()) {
      report.mismatched.push_back(std::string(adapted.status().message()));
      continue;
    }
    staged[key] = *adapted;
  }
  for (const auto& item : params) {
    if (!found.count(item.key())) report.missing.push_back(item.key());
  }
  if (strict && !report.clean()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weights do not fit model '", model.config().name, "': ", ReportMessage(report)));
  }
  torch::NoGradGuard no_grad;
  for (auto& [key, value] : staged) params[key].copy_(value);
  return report;
}

}  // namespace

absl::StatusOr<LoadReport> LoadViTWeights(VisionTransformerImpl& model, const SafetensorsFile& file,
                                          bool strict) {
  // Conversions and copies run LibTorch: whatever it throws (a file's odd
  // dtype, memory) becomes a status here, at the loader's boundary.
  absl::StatusOr<LoadReport> report = absl::InternalError("weights not loaded");
  MKD_RETURN_IF_ERROR(CatchTorch("loading ViT weights",
                                 [&] { report = LoadViTWeightsUnguarded(model, file, strict); }));
  return report;
}

absl::StatusOr<LoadReport> LoadViTWeightsFile(VisionTransformerImpl& model, const std::string& path,
                                              bool strict) {
  MKD_ASSIGN_OR_RETURN(SafetensorsFile file, ReadSafetensors(path));
  auto report = LoadViTWeights(model, file, strict);
  if (!report.ok()) return Annotate(report.status(), path);
  return report;
}

absl::StatusOr<SafetensorsFile> ViTStateDict(const VisionTransformerImpl& model,
                                             std::map<std::string, std::string> metadata) {
  SafetensorsFile file;
  file.metadata = std::move(metadata);
  file.metadata["format"] = "pt";
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    MKD_ASSIGN_OR_RETURN(file.tensors[item.key()],
                         FromTensor(item.value().detach().to(torch::kFloat32)));
  }
  return file;
}

absl::Status SaveViTWeights(const VisionTransformerImpl& model, const std::string& path,
                            std::map<std::string, std::string> metadata) {
  MKD_ASSIGN_OR_RETURN(SafetensorsFile file, ViTStateDict(model, std::move(metadata)));
  return WriteSafetensors(path, file);
}

absl::StatusOr<torch::Tensor> ResizePosEmbed(const torch::Tensor& pos_embed, int64_t prefix,
                                             int64_t new_grid) {
  if (pos_embed.dim() != 3 || pos_embed.size(0) != 1 || pos_embed.size(1) <= prefix) {
    return absl::InvalidArgumentError(absl::StrCat("pos_embed must be [1, prefix + h*w, D], got ",
                                                   ShapeString(Sizes(pos_embed))));
  }
  const int64_t n = pos_embed.size(1) - prefix;
  const auto old_grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  if (old_grid * old_grid != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("pos_embed has ", n, " patch positions, not a square grid"));
  }
  const int64_t d = pos_embed.size(2);
  using torch::indexing::Slice;
  torch::Tensor head = pos_embed.index({Slice(), Slice(0, prefix)});
  // [1, h*w, D] -> [1, D, h, w] -> resize -> [1, new*new, D]
  torch::Tensor grid = pos_embed.index({Slice(), Slice(prefix)})
                           .reshape({1, old_grid, old_grid, d})
                           .permute({0, 3, 1, 2});
  namespace F = torch::nn::functional;
  // timm resamples with antialiasing, which matters only when shrinking.
  grid = F::interpolate(grid, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{new_grid, new_grid})
                                  .mode(torch::kBicubic)
                                  .align_corners(false)
                                  .antialias(true));
  grid = grid.permute({0, 2, 3, 1}).reshape({1, new_grid * new_grid, d});
  return torch::cat({head, grid}, 1);
}

}  // namespace mkd
