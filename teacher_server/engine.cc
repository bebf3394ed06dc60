#include "teacher_server/engine.h"

#include <torch/torch.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "common/vit.h"
#include "common/vit_weights.h"

namespace mkd::teacher {
namespace {

// FNV-1a of the weights file: a model id that changes when the weights do,
// without trusting file names.
std::string WeightsDigest(absl::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return absl::StrFormat("%016x", h);
}

torch::Dtype ComputeDtype(const std::string& name) {
  if (name == "bf16") return torch::kBFloat16;
  if (name == "fp16") return torch::kFloat16;
  return torch::kFloat32;
}

class TorchEngine final : public Engine {
 public:
  TorchEngine(VisionTransformer model, torch::Device device, torch::Dtype dtype, std::string id)
      : model_(std::move(model)), device_(device), dtype_(dtype), model_id_(std::move(id)) {}

  const ViTConfig& config() const override { return model_->config(); }
  const std::string& model_id() const override { return model_id_; }
  std::string device() const override { return device_.str(); }

  absl::StatusOr<EngineOutput> Run(const torch::Tensor& patches, const torch::Tensor& idx,
                                   bool features) override {
    EngineOutput out;
    MKD_RETURN_IF_ERROR(CatchTorch("teacher forward", [&] {
      torch::NoGradGuard no_grad;
      ViTOutput o = model_->ForwardKeptPatches(patches.to(device_, dtype_), idx.to(device_));
      out.logits = o.logits.to(torch::kCPU, torch::kFloat32);
      if (features) out.features = o.cls_feature.to(torch::kCPU, torch::kFloat32);
    }));
    return out;
  }

 private:
  VisionTransformer model_;
  const torch::Device device_;
  const torch::Dtype dtype_;
  const std::string model_id_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const TeacherServerConfig& config) {
  ViTConfig model_config = config.model;
  model_config.drop_path_rate = 0.0;
  VisionTransformer model{nullptr};
  MKD_RETURN_IF_ERROR(
      CatchTorch("building the teacher", [&] { model = VisionTransformer(model_config); }));
  // One read serves both the weights and the model id's digest.
  absl::StatusOr<std::string> bytes = ReadFile(config.weights);
  if (!bytes.ok()) return Annotate(bytes.status(), "teacher weights");
  absl::StatusOr<SafetensorsFile> file = ParseSafetensors(*bytes);
  if (!file.ok()) return Annotate(file.status(), absl::StrCat("teacher weights ", config.weights));
  auto report = LoadViTWeights(*model, *file);
  if (!report.ok()) return Annotate(report.status(), absl::StrCat("teacher weights ", config.weights));
  torch::Device device(torch::kCPU);
  if (config.device != "cpu") {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(
          absl::StrCat("device '", config.device, "': no CUDA device in this process"));
    }
    MKD_RETURN_IF_ERROR(CatchTorch("device", [&] { device = torch::Device(config.device); }));
  }
  const torch::Dtype dtype = ComputeDtype(config.dtype);
  MKD_RETURN_IF_ERROR(CatchTorch("moving the teacher", [&] {
    model->to(device, dtype);
    model->eval();
  }));
  std::string id = config.model_id;
  if (id.empty()) {
    id = absl::StrCat(std::filesystem::path(config.weights).stem().string(), "@",
                      WeightsDigest(*bytes));
  }
  return std::unique_ptr<Engine>(new TorchEngine(std::move(model), device, dtype, std::move(id)));
}

}  // namespace mkd::teacher
