#include "common/losses.h"

#include <torch/types.h>

#include "absl/strings/str_cat.h"

namespace mkd {

torch::Tensor CrossEntropy(const torch::Tensor& logits, const torch::Tensor& target,
                           double label_smoothing) {
  TORCH_CHECK(logits.dim() == 2 && target.dim() == 1 && target.size(0) == logits.size(0),
              "CrossEntropy: logits [B, C], target [B]");
  torch::Tensor logp = logits.log_softmax(-1);
  torch::Tensor nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1);
  if (label_smoothing == 0.0) return nll.mean();
  torch::Tensor uniform = -logp.mean(-1);
  return ((1.0 - label_smoothing) * nll + label_smoothing * uniform).mean();
}

torch::Tensor SoftTargetCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target) {
  TORCH_CHECK(logits.sizes() == target.sizes(), "SoftTargetCrossEntropy: shapes differ");
  return (-target * logits.log_softmax(-1)).sum(-1).mean();
}

torch::Tensor KdLoss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                     double tau) {
  TORCH_CHECK(student_logits.sizes() == teacher_logits.sizes(), "KdLoss: shapes differ");
  torch::Tensor log_ps = (student_logits / tau).log_softmax(-1);
  torch::Tensor log_pt = (teacher_logits.detach() / tau).log_softmax(-1);
  // KL(p_t || p_s) summed over classes, mean over the batch ("batchmean").
  torch::Tensor kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean();
  return kl * (tau * tau);
}

torch::Tensor HardDistillLoss(const torch::Tensor& student_logits,
                              const torch::Tensor& teacher_logits) {
  return CrossEntropy(student_logits, teacher_logits.detach().argmax(-1));
}

absl::StatusOr<KdKind> ParseKdKind(absl::string_view name) {
  if (name == "soft") return KdKind::kSoft;
  if (name == "hard") return KdKind::kHard;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown distillation kind '", name, "'; expected soft or hard"));
}

DistillLossTerms DistillLoss(const torch::Tensor& student_logits,
                             const torch::Tensor& teacher_logits, const torch::Tensor& target,
                             const DistillLossOptions& options, double label_smoothing) {
  DistillLossTerms terms;
  terms.ce = target.dim() == 2 ? SoftTargetCrossEntropy(student_logits, target)
                               : CrossEntropy(student_logits, target, label_smoothing);
  terms.kd = options.kind == KdKind::kHard ? HardDistillLoss(student_logits, teacher_logits)
                                           : KdLoss(student_logits, teacher_logits, options.tau);
  terms.total = (1.0 - options.alpha) * terms.ce + options.alpha * terms.kd;
  return terms;
}

}  // namespace mkd
