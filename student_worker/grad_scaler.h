// Dynamic loss scaling for fp16 training, as torch.amp.GradScaler does it:
// the loss is multiplied by a scale before backward so that small fp16
// gradients do not flush to zero; the gradients are divided by the scale
// before the optimizer step; a step whose gradients hold inf or NaN is
// skipped and the scale halves; after `growth_interval` clean steps in a
// row it doubles. Disabled (bf16, fp32), every call is the identity.
//
// Not thread-safe; owned by the trainer.
#ifndef MKD_STUDENT_WORKER_GRAD_SCALER_H_
#define MKD_STUDENT_WORKER_GRAD_SCALER_H_

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "common/safetensors.h"

namespace mkd::student {

struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class GradScaler {
 public:
  GradScaler(bool enabled, const GradScalerOptions& options);

  bool enabled() const { return enabled_; }
  double scale() const { return enabled_ ? scale_ : 1.0; }

  // loss * scale (the loss itself when disabled).
  torch::Tensor Scale(const torch::Tensor& loss) const;

  // Divides every defined gradient of `params` by the scale. Returns true
  // when all of them are finite (the step may go ahead). One device sync.
  bool Unscale(const std::vector<torch::Tensor>& params);

  // After a step: backs off if `found_inf`, else counts towards growth.
  void Update(bool found_inf);

  // "amp.scale" and "amp.growth_tracker" in the checkpoint's metadata, so a
  // resumed fp16 run continues with the same scale.
  void Save(SafetensorsFile* file) const;
  // A checkpoint without the keys (written by an fp32/bf16 run) keeps the
  // current state. kDataLoss for malformed values.
  absl::Status Load(const SafetensorsFile& file);

 private:
  const bool enabled_;
  const GradScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;  // Clean steps since the last change.
};

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_GRAD_SCALER_H_
