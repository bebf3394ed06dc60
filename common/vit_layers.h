// Building blocks of the Vision Transformer, named exactly like timm's
// modules so that parameter paths are timm state-dict keys:
// PatchEmbed (`proj`), Attention (`qkv`, `proj`), Mlp (`fc1`, `fc2`),
// LayerScale (`gamma`), Block (`norm1`, `attn`, `ls1`, `norm2`, `mlp`, `ls2`).
//
// Thread safety: modules are not safe for concurrent forward calls that
// change training mode; concurrent eval-mode forwards are fine.
#ifndef MKD_COMMON_VIT_LAYERS_H_
#define MKD_COMMON_VIT_LAYERS_H_

#include <torch/torch.h>

#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mkd {

// How the student's CLS saliency is normalised (docs/design.md section 1).
enum class SaliencyMode {
  // Softmax over all N + prefix keys, then drop the prefix columns: the
  // MaskedKD authors' code, and the default.
  kAllKeys,
  // Softmax over the N patch keys only: the paper's formula.
  kPatchKeys,
};

// "all_keys" | "patch_keys"; kInvalidArgument names anything else.
absl::StatusOr<SaliencyMode> ParseSaliencyMode(absl::string_view name);
absl::string_view SaliencyModeName(SaliencyMode mode);

// Fills `t` in place from N(0, std^2) truncated to [-2, 2] (timm's
// trunc_normal_ with its absolute bounds), by inverse-CDF sampling.
void TruncNormal_(torch::Tensor t, double std);

// Per-sample stochastic depth: in training, zeroes whole samples of `x`
// with probability `rate` and scales survivors by 1/(1-rate).
torch::Tensor DropPath(const torch::Tensor& x, double rate, bool training);

// Patch embedding: a conv with kernel = stride = patch size. Stored as
// timm's Conv2d (`proj.weight` [D, C, p, p]) but applied as a linear map
// on flattened patches, so embedding only the kept patches is exact.
class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int in_chans, int patch_size, int embed_dim);

  // patches: [B, n, C*p*p] (C-major, then row, then column) -> [B, n, D].
  torch::Tensor forward(const torch::Tensor& patches);

  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

// Multi-head self-attention with a fused qkv projection; qkv rows are
// [q | k | v] with heads contiguous inside each.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int dim, int num_heads, bool qkv_bias);

  // x: [B, n, D] -> [B, n, D].
  torch::Tensor forward(const torch::Tensor& x);

  // Attention for the first `num_queries` tokens only (keys and values
  // cover all n): [B, n, D] -> [B, num_queries, D]. Exact for those rows.
  // If `saliency` is non-null, also writes the CLS query's attention over
  // the patch keys (keys after the first `num_prefix`), mean over heads,
  // normalised per `mode`: [B, n - num_prefix]. Reuses the CLS attention
  // row, so no n x n map exists.
  torch::Tensor ForwardQueries(const torch::Tensor& x, int64_t num_queries, int64_t num_prefix,
                               SaliencyMode mode, torch::Tensor* saliency);

  // The CLS saliency alone, from q_cls . K^T: [B, n, D] -> [B, n - num_prefix].
  torch::Tensor ClsSaliency(const torch::Tensor& x, int64_t num_prefix, SaliencyMode mode);

  torch::nn::Linear qkv{nullptr};
  torch::nn::Linear proj{nullptr};

 private:
  // [B, n, D] -> q, k, v each [B, H, n, hd].
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> SplitQkv(const torch::Tensor& x);

  int64_t num_heads_;
  double scale_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int dim, int hidden);
  torch::Tensor forward(const torch::Tensor& x);  // [B, n, D] -> [B, n, D]

  torch::nn::Linear fc1{nullptr};
  torch::nn::Linear fc2{nullptr};
};
TORCH_MODULE(Mlp);

class LayerScaleImpl : public torch::nn::Module {
 public:
  LayerScaleImpl(int dim, double init_value);
  torch::Tensor forward(const torch::Tensor& x) const { return x * gamma; }

  torch::Tensor gamma;
};
TORCH_MODULE(LayerScale);

struct BlockOptions {
  int dim = 768;
  int num_heads = 12;
  int mlp_hidden = 3072;
  bool qkv_bias = true;
  std::optional<double> init_values;
  double drop_path = 0.0;
};

// Pre-norm transformer block:
//   x = x + drop_path(ls1(attn(norm1(x))))
//   x = x + drop_path(ls2(mlp(norm2(x))))
class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const BlockOptions& options);

  torch::Tensor forward(const torch::Tensor& x);  // [B, n, D] -> [B, n, D]

  // Output rows of the first `num_queries` tokens only: [B, n, D] ->
  // [B, num_queries, D]; optional CLS saliency as in
  // AttentionImpl::ForwardQueries.
  torch::Tensor ForwardQueries(const torch::Tensor& x, int64_t num_queries, int64_t num_prefix,
                               SaliencyMode mode, torch::Tensor* saliency);

  torch::nn::LayerNorm norm1{nullptr};
  Attention attn{nullptr};
  LayerScale ls1{nullptr};  // Null without LayerScale.
  torch::nn::LayerNorm norm2{nullptr};
  Mlp mlp{nullptr};
  LayerScale ls2{nullptr};

 private:
  torch::Tensor Residual(const torch::Tensor& x, const torch::Tensor& branch, const LayerScale& ls);

  double drop_path_;
};
TORCH_MODULE(Block);

}  // namespace mkd

#endif  // MKD_COMMON_VIT_LAYERS_H_
