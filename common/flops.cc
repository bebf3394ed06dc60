#include "common/flops.h"

namespace mkd {

double BlockFlops(const ViTConfig& config, int64_t n_tokens) {
  const double n = static_cast<double>(n_tokens);
  const double d = config.embed_dim;
  // qkv (6nd^2) + proj (2nd^2) + MLP (2 * 2 * ratio * nd^2), plus the two
  // attention matmuls q.k^T and attn.v (2 * 2n^2 d).
  return (8.0 + 4.0 * config.mlp_ratio) * n * d * d + 4.0 * n * n * d;
}

double ViTForwardFlops(const ViTConfig& config, int64_t kept_patches) {
  const double d = config.embed_dim;
  const int64_t n_tokens = kept_patches + config.num_prefix_tokens();
  double flops = 2.0 * static_cast<double>(kept_patches) * config.patch_dim() * d;
  flops += config.depth * BlockFlops(config, n_tokens);
  const int heads = config.dist_token ? 2 : 1;
  flops += heads * 2.0 * d * config.num_classes;
  return flops;
}

}  // namespace mkd
