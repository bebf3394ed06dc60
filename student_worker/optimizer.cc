#include "student_worker/optimizer.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"

namespace mkd::student {

AdamW::AdamW(const torch::OrderedDict<std::string, torch::Tensor>& params, const OptimConfig& config)
    : config_(config) {
  for (const auto& item : params) {
    const std::string& name = item.key();
    const torch::Tensor& p = item.value();
    if (!p.requires_grad()) continue;
    bool no_decay = p.dim() <= 1 || name == "cls_token" || name == "dist_token" || name == "pos_embed";
    slots_.push_back({name, p, torch::zeros_like(p), torch::zeros_like(p), !no_decay});
  }
}

void AdamW::ZeroGrad() {
  for (auto& s : slots_) {
    if (s.param.grad().defined()) s.param.mutable_grad().zero_();
  }
}

void AdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double b1 = config_.beta1, b2 = config_.beta2;
  const double bias1 = 1.0 - std::pow(b1, static_cast<double>(steps_));
  const double bias2 = 1.0 - std::pow(b2, static_cast<double>(steps_));
  for (auto& s : slots_) {
    if (!s.param.grad().defined()) continue;
    const torch::Tensor& g = s.param.grad();
    if (s.decay) s.param.mul_(1.0 - lr * config_.weight_decay);
    s.exp_avg.mul_(b1).add_(g, 1.0 - b1);
    s.exp_avg_sq.mul_(b2).addcmul_(g, g, 1.0 - b2);
    torch::Tensor denom = (s.exp_avg_sq / bias2).sqrt_().add_(config_.eps);
    s.param.addcdiv_(s.exp_avg, denom, -lr / bias1);
  }
}

void AdamW::SaveState(SafetensorsFile* file) const {
  for (const auto& s : slots_) {
    file->tensors["optim." + s.name + ".exp_avg"] = *FromTensor(s.exp_avg);
    file->tensors["optim." + s.name + ".exp_avg_sq"] = *FromTensor(s.exp_avg_sq);
  }
  file->metadata["optim.steps"] = std::to_string(steps_);
}

absl::Status AdamW::LoadState(const SafetensorsFile& file) {
  auto steps_it = file.metadata.find("optim.steps");
  if (steps_it == file.metadata.end()) return absl::InvalidArgumentError("optimizer state lacks optim.steps");
  int64_t steps = 0;
  if (!absl::SimpleAtoi(steps_it->second, &steps) || steps < 0) {
    return absl::InvalidArgumentError("optimizer state has a bad optim.steps");
  }
  std::vector<std::pair<torch::Tensor, torch::Tensor>> loaded;
  for (const auto& s : slots_) {
    std::pair<torch::Tensor, torch::Tensor> pair;
    for (auto [suffix, out] : {std::pair{".exp_avg", &pair.first}, std::pair{".exp_avg_sq", &pair.second}}) {
      std::string key = "optim." + s.name + suffix;
      auto it = file.tensors.find(key);
      if (it == file.tensors.end()) return absl::InvalidArgumentError(absl::StrCat("optimizer state lacks '", key, "'"));
      MKD_ASSIGN_OR_RETURN(*out, ToTensor(it->second));
      if (out->sizes() != s.param.sizes()) {
        return absl::InvalidArgumentError(absl::StrCat("optimizer state '", key, "' has the wrong shape"));
      }
    }
    loaded.push_back(pair);
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].exp_avg.copy_(loaded[i].first);
    slots_[i].exp_avg_sq.copy_(loaded[i].second);
  }
  steps_ = steps;
  return absl::OkStatus();
}

double ScheduledLr(const OptimConfig& c, double peak_lr, int64_t step, int64_t warmup_steps,
                   int64_t total_steps) {
  if (step < warmup_steps) {
    return c.warmup_lr + (peak_lr - c.warmup_lr) * static_cast<double>(step) / warmup_steps;
  }
  const int64_t span = std::max<int64_t>(1, total_steps - warmup_steps);
  const double t = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
  return c.min_lr + 0.5 * (peak_lr - c.min_lr) * (1.0 + std::cos(M_PI * t));
}

}  // namespace mkd::student
