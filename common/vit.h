// The Vision Transformer (timm's VisionTransformer / DeiT / DeiT-III) with
// the forward passes MaskedKD needs: full, kept-tokens-only (teacher) and
// full-with-CLS-saliency (student).
//
// Parameter names are timm's state-dict keys (`cls_token`, `pos_embed`,
// `patch_embed.proj.*`, `blocks.{i}.*`, `norm.*`, `head.*`, `dist_token`,
// `head_dist.*`), so checkpoints move between the two unchanged.
//
// Thread safety: as torch::nn::Module; concurrent eval-mode forwards are safe.
#ifndef MKD_COMMON_VIT_H_
#define MKD_COMMON_VIT_H_

#include <torch/torch.h>

#include "absl/status/status.h"
#include "common/vit_config.h"
#include "common/vit_layers.h"

namespace mkd {

struct ForwardOptions {
  // Also return the last block's CLS saliency over the input patches.
  bool saliency = false;
  SaliencyMode saliency_mode = SaliencyMode::kAllKeys;
  // Also return every token after the final norm (feature distillation).
  // When false, the last block computes only the prefix-token rows, which
  // is exact for the logits and skips most of that block's work.
  bool tokens = false;
};

struct ViTOutput {
  torch::Tensor logits;       // [B, num_classes]; with a dist token, the mean of both heads.
  torch::Tensor dist_logits;  // [B, num_classes] from head_dist; undefined without one.
  torch::Tensor cls_feature;  // [B, D]: CLS after the final norm (pre-head).
  torch::Tensor saliency;     // [B, n_in] over the input patches, if asked.
  torch::Tensor tokens;       // [B, prefix + n_in, D] after the final norm, if asked.
};

class VisionTransformerImpl : public torch::nn::Module {
 public:
  // REQUIRES: ValidateViTConfig(config).ok(). Parameters get timm's
  // initialisation from the global torch RNG (seed it for determinism).
  explicit VisionTransformerImpl(const ViTConfig& config);

  // images: [B, C, H, W] (normalised) -> logits [B, num_classes].
  torch::Tensor forward(const torch::Tensor& images);

  // Full forward on every patch of `images` [B, C, H, W].
  ViTOutput Forward(const torch::Tensor& images, const ForwardOptions& options = {});

  // Teacher forward on kept tokens: embeds only the patches `idx` [B, k]
  // (int64 indices into this model's N-patch grid) of `images`
  // [B, C, H, W], adds their positional embeddings, keeps the prefix
  // tokens, and runs every block on k + prefix tokens.
  ViTOutput ForwardKept(const torch::Tensor& images, const torch::Tensor& idx,
                        const ForwardOptions& options = {});

  // As ForwardKept, with the kept patches already cut:
  // `patches` [B, k, C*p*p] (see CutPatches), `idx` [B, k].
  ViTOutput ForwardKeptPatches(const torch::Tensor& patches, const torch::Tensor& idx,
                               const ForwardOptions& options = {});

  const ViTConfig& config() const { return config_; }

  // Public and named like their checkpoint keys (see the file comment).
  PatchEmbed patch_embed{nullptr};
  torch::Tensor cls_token;   // [1, 1, D]
  torch::Tensor dist_token;  // [1, 1, D]; undefined without a dist token.
  torch::Tensor pos_embed;   // [1, N (+ prefix unless no_embed_class), D]
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear head{nullptr};
  torch::nn::Linear head_dist{nullptr};  // Null without a dist token.

 private:
  void InitWeights();

  // patches [B, n, Cpp], idx [B, n] or undefined (all patches in order)
  // -> tokens [B, prefix + n, D] with positional embeddings.
  torch::Tensor Embed(const torch::Tensor& patches, const torch::Tensor& idx);

  // Blocks, norm and heads on embedded tokens [B, prefix + n, D].
  ViTOutput Run(torch::Tensor x, const ForwardOptions& options);

  ViTConfig config_;
};
TORCH_MODULE(VisionTransformer);

// Checks images for this model: float, [B, in_chans, img_size, img_size]
// with B >= 1. kInvalidArgument names the mismatch.
absl::Status ValidateImages(const ViTConfig& config, const torch::Tensor& images);

// Checks kept indices: int64 [B, k], 1 <= k <= N, each in [0, N) and unique
// within its row. kInvalidArgument names the first offending row. Indices
// on a device get the dtype and shape checks only (reading their values
// would wait for the device).
absl::Status ValidateKeptIndices(const torch::Tensor& idx, int64_t batch, int64_t num_patches);

}  // namespace mkd

#endif  // MKD_COMMON_VIT_H_
