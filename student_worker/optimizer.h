// AdamW with decoupled weight decay (as torch.optim.AdamW) and the
// DeiT learning-rate schedule. Written here rather than taken from
// torch::optim so that its whole state is plain named tensors, which the
// checkpoint saves and restores exactly.
#ifndef MKD_STUDENT_WORKER_OPTIMIZER_H_
#define MKD_STUDENT_WORKER_OPTIMIZER_H_

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/safetensors.h"
#include "student_worker/train_config.h"

namespace mkd::student {

// Not thread-safe; owned by the trainer.
class AdamW {
 public:
  // Parameters named by their state-dict keys. As timm, 1-D parameters
  // (biases, norms, LayerScale) and the cls/dist tokens and pos_embed get no
  // weight decay.
  AdamW(const torch::OrderedDict<std::string, torch::Tensor>& params, const OptimConfig& config);

  // One update with learning rate `lr` from the parameters' .grad().
  void Step(double lr);
  void ZeroGrad();
  int64_t steps() const { return steps_; }

  // State as tensors "<param>.exp_avg", "<param>.exp_avg_sq" plus the step.
  void SaveState(SafetensorsFile* file) const;
  // kInvalidArgument naming any missing or mis-shaped entry.
  absl::Status LoadState(const SafetensorsFile& file);

 private:
  struct Slot {
    std::string name;
    torch::Tensor param;
    torch::Tensor exp_avg;
    torch::Tensor exp_avg_sq;
    bool decay;
  };
  std::vector<Slot> slots_;
  OptimConfig config_;
  int64_t steps_ = 0;
};

// Learning rate at `step` of `total_steps`: linear warm-up from warmup_lr
// over `warmup_steps`, then cosine from `peak_lr` to min_lr.
double ScheduledLr(const OptimConfig& config, double peak_lr, int64_t step, int64_t warmup_steps,
                   int64_t total_steps);

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_OPTIMIZER_H_
