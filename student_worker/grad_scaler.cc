#include "student_worker/grad_scaler.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mkd::student {

GradScaler::GradScaler(bool enabled, const GradScalerOptions& options)
    : enabled_(enabled), options_(options), scale_(options.init_scale) {}

torch::Tensor GradScaler::Scale(const torch::Tensor& loss) const {
  return enabled_ ? loss * scale_ : loss;
}

bool GradScaler::Unscale(const std::vector<torch::Tensor>& params) {
  if (!enabled_) return true;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const torch::Tensor& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return true;
  const torch::TensorOptions f32 =
      torch::TensorOptions().dtype(torch::kFloat32).device(grads[0].device());
  torch::Tensor found_inf = torch::zeros({1}, f32);
  if (grads[0].is_cuda()) {
    // One fused multi-tensor kernel: unscale and look for inf/NaN.
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf,
                                                   torch::full({1}, 1.0 / scale_, f32));
  } else {
    for (torch::Tensor& g : grads) {
      g.mul_(1.0 / scale_);
      found_inf.add_(g.isfinite().logical_not().any().to(torch::kFloat32));
    }
  }
  return found_inf.item<float>() == 0.0f;
}

void GradScaler::Update(bool found_inf) {
  if (!enabled_) return;
  if (found_inf) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ == options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
}

void GradScaler::Save(SafetensorsFile* file) const {
  if (!enabled_) return;
  file->metadata["amp.scale"] = absl::StrFormat("%.17g", scale_);
  file->metadata["amp.growth_tracker"] = std::to_string(growth_tracker_);
}

absl::Status GradScaler::Load(const SafetensorsFile& file) {
  auto scale = file.metadata.find("amp.scale");
  auto tracker = file.metadata.find("amp.growth_tracker");
  if (!enabled_ || scale == file.metadata.end() || tracker == file.metadata.end()) {
    return absl::OkStatus();
  }
  double s = 0;
  int64_t t = 0;
  if (!absl::SimpleAtod(scale->second, &s) || !(s > 0) || !std::isfinite(s) ||
      !absl::SimpleAtoi(tracker->second, &t) || t < 0) {
    return absl::DataLossError(absl::StrCat("checkpoint state has a bad amp.scale '", scale->second,
                                            "' or amp.growth_tracker '", tracker->second, "'"));
  }
  scale_ = s;
  growth_tracker_ = t;
  return absl::OkStatus();
}

}  // namespace mkd::student
