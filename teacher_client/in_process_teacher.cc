// The embedded teacher: a ViT in the student's own process.
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "common/vit.h"
#include "common/vit_weights.h"
#include "teacher_client/teacher.h"

namespace mkd::client {

PendingLogits Teacher::SubmitLogits(const torch::Tensor& images, const torch::Tensor& idx) {
  std::promise<absl::StatusOr<TeacherAnswer>> done;
  absl::StatusOr<torch::Tensor> logits = Logits(images, idx);
  if (logits.ok()) {
    done.set_value(TeacherAnswer{*std::move(logits), {}});
  } else {
    done.set_value(logits.status());
  }
  return done.get_future().share();
}

absl::StatusOr<TeacherAnswer> AwaitAnswer(const PendingLogits& pending, absl::Duration timeout) {
  if (pending.wait_for(absl::ToChronoNanoseconds(timeout)) != std::future_status::ready) {
    return absl::DeadlineExceededError(
        absl::StrCat("no teacher logits after ", absl::FormatDuration(timeout)));
  }
  return pending.get();
}

absl::StatusOr<torch::Tensor> AwaitLogits(const PendingLogits& pending, absl::Duration timeout) {
  MKD_ASSIGN_OR_RETURN(TeacherAnswer answer, AwaitAnswer(pending, timeout));
  return std::move(answer.logits);
}

namespace {

class InProcessTeacher final : public Teacher {
 public:
  InProcessTeacher(VisionTransformer model, torch::Device device, torch::Dtype dtype)
      : model_(std::move(model)), device_(device), dtype_(dtype) {
    model_->eval();
  }

  const ViTConfig& config() const override { return model_->config(); }

  absl::StatusOr<torch::Tensor> Logits(const torch::Tensor& images,
                                       const torch::Tensor& idx) override {
    MKD_RETURN_IF_ERROR(ValidateImages(config(), images));
    MKD_RETURN_IF_ERROR(ValidateKeptIndices(idx, images.size(0), config().num_patches()));
    torch::Tensor logits;
    MKD_RETURN_IF_ERROR(CatchTorch("teacher forward", [&] {
      torch::NoGradGuard no_grad;
      torch::Tensor x = images.to(device_, dtype_);
      logits = idx.size(1) == config().num_patches()
                   ? model_->forward(x)
                   : model_->ForwardKept(x, idx.to(device_)).logits;
      logits = logits.to(images.device(), torch::kFloat32);
    }));
    return logits;
  }

  absl::StatusOr<torch::Tensor> Saliency(const torch::Tensor& images) override {
    MKD_RETURN_IF_ERROR(ValidateImages(config(), images));
    torch::Tensor saliency;
    MKD_RETURN_IF_ERROR(CatchTorch("teacher saliency", [&] {
      torch::NoGradGuard no_grad;
      ForwardOptions o;
      o.saliency = true;
      saliency = model_->Forward(images.to(device_, dtype_), o).saliency;
      saliency = saliency.to(images.device(), torch::kFloat32);
    }));
    return saliency;
  }

 private:
  VisionTransformer model_;
  const torch::Device device_;
  const torch::Dtype dtype_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Teacher>> MakeInProcessTeacher(const std::string& model_spec,
                                                              const std::string& weights,
                                                              torch::Device device,
                                                              torch::Dtype dtype) {
  MKD_ASSIGN_OR_RETURN(ViTConfig config, ResolveViTConfig(model_spec));
  config.drop_path_rate = 0.0;
  VisionTransformer model{nullptr};
  MKD_RETURN_IF_ERROR(
      CatchTorch("building the teacher", [&] { model = VisionTransformer(config); }));
  auto report = LoadViTWeightsFile(*model, weights);
  if (!report.ok()) return Annotate(report.status(), "teacher");
  MKD_RETURN_IF_ERROR(CatchTorch("moving the teacher", [&] { model->to(device, dtype); }));
  return std::unique_ptr<Teacher>(new InProcessTeacher(std::move(model), device, dtype));
}

}  // namespace mkd::client
