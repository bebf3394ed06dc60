#include "common/vit_layers.h"

#include <torch/version.h>

#include <cmath>

#include "absl/strings/str_cat.h"

namespace mkd {
namespace {

torch::nn::LayerNorm MakeNorm(int dim) {
  // timm's ViT uses eps 1e-6, not PyTorch's default 1e-5.
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6));
}

// softmax(q k^T * scale) v for q: [B, H, m, hd], k, v: [B, H, n, hd].
torch::Tensor Attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     double scale) {
#if TORCH_VERSION_MAJOR >= 2
  // Fused kernels (flash / memory-efficient) on CUDA; same maths.
  return at::scaled_dot_product_attention(q, k, v);
#else
  torch::Tensor attn = torch::matmul(q * scale, k.transpose(-2, -1)).softmax(-1);
  return torch::matmul(attn, v);
#endif
}

// CLS saliency from the CLS query's attention logits [B, H, n] per `mode`.
torch::Tensor SaliencyFromLogits(const torch::Tensor& cls_logits, int64_t num_prefix,
                                 SaliencyMode mode) {
  using torch::indexing::Slice;
  if (mode == SaliencyMode::kAllKeys) {
    return cls_logits.softmax(-1).index({Slice(), Slice(), Slice(num_prefix)}).mean(1);
  }
  return cls_logits.index({Slice(), Slice(), Slice(num_prefix)}).softmax(-1).mean(1);
}

}  // namespace

absl::StatusOr<SaliencyMode> ParseSaliencyMode(absl::string_view name) {
  if (name == "all_keys") return SaliencyMode::kAllKeys;
  if (name == "patch_keys") return SaliencyMode::kPatchKeys;
  return absl::InvalidArgumentError(
      absl::StrCat("must be all_keys or patch_keys, got '", name, "'"));
}

absl::string_view SaliencyModeName(SaliencyMode mode) {
  return mode == SaliencyMode::kPatchKeys ? "patch_keys" : "all_keys";
}

void TruncNormal_(torch::Tensor t, double std) {
  torch::NoGradGuard no_grad;
  constexpr double kLo = -2.0;
  constexpr double kHi = 2.0;
  auto cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  double l = cdf(kLo / std);
  double u = cdf(kHi / std);
  t.uniform_(2 * l - 1, 2 * u - 1);
  t.erfinv_();
  t.mul_(std * std::sqrt(2.0));
  t.clamp_(kLo, kHi);
}

torch::Tensor DropPath(const torch::Tensor& x, double rate, bool training) {
  if (!training || rate <= 0.0) return x;
  double keep = 1.0 - rate;
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  torch::Tensor mask = torch::empty(shape, x.options()).bernoulli_(keep);
  return x * mask / keep;
}

PatchEmbedImpl::PatchEmbedImpl(int in_chans, int patch_size, int embed_dim) {
  proj = register_module(
      "proj", torch::nn::Conv2d(
                  torch::nn::Conv2dOptions(in_chans, embed_dim, patch_size).stride(patch_size)));
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& patches) {
  // [D, C, p, p] -> [D, C*p*p]: the conv is a per-patch linear map.
  torch::Tensor w = proj->weight.flatten(1);
  return torch::nn::functional::linear(patches, w, proj->bias);
}

AttentionImpl::AttentionImpl(int dim, int num_heads, bool qkv_bias)
    : num_heads_(num_heads), scale_(1.0 / std::sqrt(static_cast<double>(dim / num_heads))) {
  qkv = register_module("qkv",
                        torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(qkv_bias)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> AttentionImpl::SplitQkv(
    const torch::Tensor& x) {
  int64_t b = x.size(0), n = x.size(1), d = x.size(2);
  // [B, n, 3D] -> [B, n, 3, H, hd] -> [3, B, H, n, hd]
  torch::Tensor qkv_t =
      qkv(x).reshape({b, n, 3, num_heads_, d / num_heads_}).permute({2, 0, 3, 1, 4});
  return {qkv_t[0], qkv_t[1], qkv_t[2]};
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  auto [q, k, v] = SplitQkv(x);
  // [B, H, n, hd] -> [B, n, H, hd] -> [B, n, D]
  torch::Tensor out = Attend(q, k, v, scale_).transpose(1, 2).reshape(x.sizes());
  return proj(out);
}

torch::Tensor AttentionImpl::ForwardQueries(const torch::Tensor& x, int64_t num_queries,
                                            int64_t num_prefix, SaliencyMode mode,
                                            torch::Tensor* saliency) {
  using torch::indexing::Slice;
  auto [q, k, v] = SplitQkv(x);
  q = q.index({Slice(), Slice(), Slice(0, num_queries)});  // [B, H, m, hd]
  // Only m query rows: the m x n logits are small, so compute them plainly
  // and reuse the CLS row for the saliency.
  torch::Tensor logits = torch::matmul(q * scale_, k.transpose(-2, -1));  // [B, H, m, n]
  torch::Tensor out = torch::matmul(logits.softmax(-1), v);               // [B, H, m, hd]
  if (saliency != nullptr) {
    *saliency = SaliencyFromLogits(logits.select(2, 0), num_prefix, mode);
  }
  return proj(out.transpose(1, 2).reshape({x.size(0), num_queries, x.size(2)}));
}

torch::Tensor AttentionImpl::ClsSaliency(const torch::Tensor& x, int64_t num_prefix,
                                         SaliencyMode mode) {
  auto [q, k, v] = SplitQkv(x);
  // q_cls . K^T: [B, H, 1, hd] x [B, H, hd, n] -> [B, H, n]
  torch::Tensor logits = torch::matmul(q.narrow(2, 0, 1) * scale_, k.transpose(-2, -1)).squeeze(2);
  return SaliencyFromLogits(logits, num_prefix, mode);
}

MlpImpl::MlpImpl(int dim, int hidden) {
  fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, dim));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  // Exact-erf GELU, as timm's nn.GELU default.
  return fc2(torch::gelu(fc1(x)));
}

LayerScaleImpl::LayerScaleImpl(int dim, double init_value) {
  gamma = register_parameter("gamma", torch::full({dim}, init_value));
}

BlockImpl::BlockImpl(const BlockOptions& o) : drop_path_(o.drop_path) {
  norm1 = register_module("norm1", MakeNorm(o.dim));
  attn = register_module("attn", Attention(o.dim, o.num_heads, o.qkv_bias));
  if (o.init_values) ls1 = register_module("ls1", LayerScale(o.dim, *o.init_values));
  norm2 = register_module("norm2", MakeNorm(o.dim));
  mlp = register_module("mlp", Mlp(o.dim, o.mlp_hidden));
  if (o.init_values) ls2 = register_module("ls2", LayerScale(o.dim, *o.init_values));
}

torch::Tensor BlockImpl::Residual(const torch::Tensor& x, const torch::Tensor& branch,
                                  const LayerScale& ls) {
  torch::Tensor scaled = ls ? ls->forward(branch) : branch;
  return x + DropPath(scaled, drop_path_, is_training());
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = Residual(x, attn(norm1(x)), ls1);
  return Residual(h, mlp(norm2(h)), ls2);
}

torch::Tensor BlockImpl::ForwardQueries(const torch::Tensor& x, int64_t num_queries,
                                        int64_t num_prefix, SaliencyMode mode,
                                        torch::Tensor* saliency) {
  torch::Tensor rows = x.narrow(1, 0, num_queries);
  torch::Tensor a = attn->ForwardQueries(norm1(x), num_queries, num_prefix, mode, saliency);
  torch::Tensor h = Residual(rows, a, ls1);
  return Residual(h, mlp(norm2(h)), ls2);
}

}  // namespace mkd
