// Image transforms for training and evaluation, and batch-level
// mixup/cutmix. Every random choice draws from a Rng passed in, which the
// loader seeds per (seed, epoch, sample), so augmentation is reproducible
// whatever the number of loader threads.
#ifndef MKD_STUDENT_WORKER_TRANSFORMS_H_
#define MKD_STUDENT_WORKER_TRANSFORMS_H_

#include <torch/types.h>

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "student_worker/dataset.h"

namespace mkd::student {

using Rng = std::mt19937_64;

// A well-mixed 64-bit seed from several integers (SplitMix64 steps).
uint64_t MixSeed(std::initializer_list<uint64_t> parts);

struct TransformConfig {
  int img_size = 224;  // Output side (square).
  int channels = 3;    // Output channels; grey input is repeated.
  std::vector<double> mean = {0.485, 0.456, 0.406};
  std::vector<double> std = {0.229, 0.224, 0.225};
  // Training augmentation (all off by default).
  bool random_resized_crop = false;  // Scale (rrc_min_scale, 1), ratio (3/4, 4/3).
  double rrc_min_scale = 0.08;
  int pad_crop = 0;  // Pad by this many pixels, then crop back (random shift).
  bool hflip = false;
  int randaugment_ops = 0;           // RandAugment: ops per image (0 = off).
  double randaugment_magnitude = 9;  // Out of 10, as timm's "m9".
  double random_erasing = 0.0;       // Probability of erasing one random box.
  // Evaluation: resize the short side to img_size / crop_pct, then center crop.
  double crop_pct = 1.0;
};

// REQUIRES nothing; kInvalidArgument names the bad field.
absl::Status ValidateTransformConfig(const TransformConfig& config);

// uint8 CHW example -> float [C, H, W] in [0, 1].
torch::Tensor ToFloat(const Example& example);

// The training pipeline: crop/shift, flip, RandAugment, to `channels`,
// normalise, random erasing. Output [channels, img_size, img_size].
torch::Tensor TrainTransform(const Example& example, const TransformConfig& config, Rng& rng);

// The evaluation pipeline: resize + center crop, to `channels`, normalise.
torch::Tensor EvalTransform(const Example& example, const TransformConfig& config);

// Individual steps, exposed for tests. All take and return [C, H, W] float.
torch::Tensor Resize(const torch::Tensor& image, int64_t height, int64_t width);
torch::Tensor CenterCrop(const torch::Tensor& image, int64_t size);
torch::Tensor RandomResizedCrop(const torch::Tensor& image, int64_t size, double min_scale,
                                Rng& rng);
torch::Tensor PadCrop(const torch::Tensor& image, int64_t pad, Rng& rng);
torch::Tensor RandAugment(const torch::Tensor& image, int ops, double magnitude, Rng& rng);
void RandomErase(torch::Tensor& image, Rng& rng);

struct MixConfig {
  double mixup_alpha = 0.0;   // 0: off.
  double cutmix_alpha = 0.0;  // 0: off.
  double prob = 1.0;          // Chance that a batch is mixed at all.
  double switch_prob = 0.5;   // With both on: chance of cutmix over mixup.
  double label_smoothing = 0.0;
};

// Mixes a batch in place (images [B, C, H, W]) with its flipped self, as
// timm's Mixup, and returns soft targets [B, classes] (each row sums to 1,
// label smoothing included). With mixing off, the targets are just the
// smoothed one-hot labels.
torch::Tensor MixBatch(torch::Tensor& images, const torch::Tensor& labels, int64_t classes,
                       const MixConfig& config, Rng& rng);

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_TRANSFORMS_H_
