#include "teacher_server/engine.h"

#include <torch/torch.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/device.h"
#include "common/file_util.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "common/vit.h"
#include "common/vit_weights.h"

namespace mkd::teacher {
namespace {

torch::Dtype ComputeDtype(DType dtype) {
  if (dtype == DType::kBF16) return torch::kBFloat16;
  if (dtype == DType::kF16) return torch::kFloat16;
  return torch::kFloat32;
}

class TorchEngine final : public Engine {
 public:
  TorchEngine(VisionTransformer model, torch::Device device, torch::Dtype dtype, std::string id)
      : model_(std::move(model)),
        device_(device),
        dtype_(dtype),
        model_id_(std::move(id)),
        h2d_(device) {}

  const ViTConfig& config() const override { return model_->config(); }
  const std::string& model_id() const override { return model_id_; }
  std::string device() const override { return device_.str(); }

  torch::Tensor HostEmpty(at::IntArrayRef sizes, torch::Dtype dtype) const override {
    return h2d_.PinnedEmpty(sizes, dtype);
  }

  absl::StatusOr<EngineInput> Upload(const std::vector<torch::Tensor>& patches,
                                     const std::vector<torch::Tensor>& idx) override {
    EngineInput in;
    MKD_RETURN_IF_ERROR(CatchTorch("teacher upload", [&] {
      // The wire dtype crosses the bus (half the bytes of fp32 for an fp16
      // wire); the cast to the compute dtype runs on the device. Mixed
      // wire dtypes (rare) are widened on the host.
      torch::Dtype wire = patches[0].scalar_type();
      for (const torch::Tensor& p : patches) {
        if (p.scalar_type() != wire) wire = torch::kFloat32;
      }
      std::vector<torch::Tensor> pieces;
      if (h2d_.device().is_cuda() || patches.size() == 1) {
        // Each piece goes as it is (pinned by HostEmpty); on CUDA they are
        // joined on the device, which is cheaper than a host copy.
        for (const torch::Tensor& p : patches) pieces.push_back(p.to(wire));
        for (const torch::Tensor& i : idx) pieces.push_back(i);
      } else {
        pieces.push_back(torch::cat(patches, 0).to(wire));
        pieces.push_back(torch::cat(idx, 0));
      }
      in.pieces = static_cast<int>(pieces.size() / 2);
      in.transfer = h2d_.Start(pieces);
    }));
    return in;
  }

  absl::StatusOr<EngineOutput> Launch(EngineInput input, bool features) override {
    EngineOutput out;
    MKD_RETURN_IF_ERROR(CatchTorch("teacher forward", [&] {
      torch::NoGradGuard no_grad;
      std::vector<torch::Tensor> t = h2d_.Finish(std::move(input.transfer));
      const std::vector<torch::Tensor> p(t.begin(), t.begin() + input.pieces);
      const std::vector<torch::Tensor> i(t.begin() + input.pieces, t.end());
      torch::Tensor patches = p.size() == 1 ? p[0] : torch::cat(p, 0);
      torch::Tensor kept = i.size() == 1 ? i[0] : torch::cat(i, 0);
      ViTOutput o = model_->ForwardKeptPatches(patches.to(dtype_), kept);
      out.logits = o.logits;
      if (features) out.features = o.cls_feature;
    }));
    return out;
  }

  absl::StatusOr<EngineOutput> Collect(EngineOutput launched) override {
    EngineOutput out;
    MKD_RETURN_IF_ERROR(CatchTorch("teacher forward", [&] {
      out.logits = launched.logits.to(torch::kCPU, torch::kFloat32);
      if (launched.features.defined()) {
        out.features = launched.features.to(torch::kCPU, torch::kFloat32);
      }
    }));
    return out;
  }

  std::optional<int64_t> PeakMemoryBytes() const override { return PeakDeviceMemory(device_); }

 private:
  VisionTransformer model_;
  const torch::Device device_;
  const torch::Dtype dtype_;
  const std::string model_id_;
  HostToDevice h2d_;
};

// engine: echo. Answers every batch with zero logits at once, so a
// benchmark measures the data path and the student alone, as with a
// teacher on hardware of its own that keeps up.
class EchoEngine final : public Engine {
 public:
  EchoEngine(ViTConfig config, torch::Device device)
      : config_(std::move(config)), device_(device), h2d_(device) {}

  const ViTConfig& config() const override { return config_; }
  const std::string& model_id() const override { return id_; }
  std::string device() const override { return device_.str(); }
  torch::Tensor HostEmpty(at::IntArrayRef sizes, torch::Dtype dtype) const override {
    return h2d_.PinnedEmpty(sizes, dtype);
  }
  absl::StatusOr<EngineInput> Upload(const std::vector<torch::Tensor>& patches,
                                     const std::vector<torch::Tensor>&) override {
    EngineInput in;
    in.pieces = 0;
    for (const torch::Tensor& p : patches) in.pieces += static_cast<int>(p.size(0));  // Rows.
    return in;
  }
  absl::StatusOr<EngineOutput> Launch(EngineInput input, bool features) override {
    EngineOutput out;
    MKD_RETURN_IF_ERROR(CatchTorch("echo", [&] {
      out.logits = torch::zeros({input.pieces, config_.num_classes});
      if (features) out.features = torch::zeros({input.pieces, config_.embed_dim});
    }));
    return out;
  }
  absl::StatusOr<EngineOutput> Collect(EngineOutput launched) override { return launched; }
  std::optional<int64_t> PeakMemoryBytes() const override { return std::nullopt; }

 private:
  const ViTConfig config_;
  const torch::Device device_;
  const std::string id_ = "echo";
  HostToDevice h2d_;
};

}  // namespace

absl::StatusOr<EngineOutput> Engine::Run(const torch::Tensor& patches, const torch::Tensor& idx,
                                         bool features) {
  MKD_ASSIGN_OR_RETURN(EngineInput in, Upload({patches}, {idx}));
  MKD_ASSIGN_OR_RETURN(EngineOutput launched, Launch(std::move(in), features));
  return Collect(std::move(launched));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const TeacherServerConfig& config) {
  if (config.engine == "echo") {
    MKD_ASSIGN_OR_RETURN(torch::Device device,
                         ResolveDevice(config.device, "teacher config key 'device'"));
    return std::unique_ptr<Engine>(new EchoEngine(config.model, device));
  }
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
  if (!report.ok())
    return Annotate(report.status(), absl::StrCat("teacher weights ", config.weights));
  MKD_ASSIGN_OR_RETURN(torch::Device device,
                       ResolveDevice(config.device, "teacher config key 'device'"));
  const torch::Dtype dtype = ComputeDtype(config.dtype);
  MKD_RETURN_IF_ERROR(CatchTorch("moving the teacher", [&] {
    model->to(device, dtype);
    model->eval();
  }));
  std::string id = config.model_id;
  if (id.empty()) {
    id = ModelIdOfWeights(config.weights, *bytes);
  }
  return std::unique_ptr<Engine>(new TorchEngine(std::move(model), device, dtype, std::move(id)));
}

}  // namespace mkd::teacher
