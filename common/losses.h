// Training losses for supervised training and MaskedKD distillation,
// matching the authors' code (docs/design.md section 1, step 4). All reductions
// are means over the batch ("batchmean"), never over batch x classes.
#ifndef MKD_COMMON_LOSSES_H_
#define MKD_COMMON_LOSSES_H_

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mkd {

// Cross-entropy with label smoothing, as torch.nn.CrossEntropyLoss:
// (1 - eps) * NLL(target) + eps * mean over classes of -log p.
// logits [B, C] float, target [B] int64.
torch::Tensor CrossEntropy(const torch::Tensor& logits, const torch::Tensor& target,
                           double label_smoothing = 0.0);

// Soft-target cross-entropy (mixup/cutmix): mean_b sum_c -t * log_softmax(s).
// target [B, C], rows summing to 1.
torch::Tensor SoftTargetCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target);

// KD term: KL(softmax(t/tau) || softmax(s/tau)) with batchmean, times tau^2.
// The teacher side carries no gradient.
torch::Tensor KdLoss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                     double tau);

// DeiT hard distillation: CE against argmax of the teacher.
torch::Tensor HardDistillLoss(const torch::Tensor& student_logits,
                              const torch::Tensor& teacher_logits);

enum class KdKind { kSoft, kHard };

absl::StatusOr<KdKind> ParseKdKind(absl::string_view name);  // "soft" | "hard"

struct DistillLossOptions {
  double alpha = 0.5;  // Weight of the KD term.
  double tau = 1.0;    // Softmax temperature (soft KD only).
  KdKind kind = KdKind::kSoft;
};

struct DistillLossTerms {
  torch::Tensor total;  // (1 - alpha) * ce + alpha * kd
  torch::Tensor ce;
  torch::Tensor kd;
};

// Total MaskedKD loss. `target` is int64 [B] (plain CE with
// `label_smoothing`) or float [B, C] soft targets (mixup/cutmix; smoothing
// is then already inside the targets).
DistillLossTerms DistillLoss(const torch::Tensor& student_logits,
                             const torch::Tensor& teacher_logits, const torch::Tensor& target,
                             const DistillLossOptions& options, double label_smoothing = 0.0);

}  // namespace mkd

#endif  // MKD_COMMON_LOSSES_H_
