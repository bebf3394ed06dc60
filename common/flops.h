// Analytic forward FLOPs of a ViT (docs/design.md section 3), counting a
// multiply-add as 2 FLOPs:
//   patch embed: 2 * n_patches * (C*p*p) * d
//   per block:   (8 + 4*mlp_ratio) * n * d^2 + 4 * n^2 * d, n = tokens incl. prefix
//                (= 24*n*d^2 + 4*n^2*d at mlp_ratio 4)
//   head:        2 * d * classes (per head)
// LayerNorms, softmax, GELU and biases are omitted, as in the paper.
// Torch-free.
#ifndef MKD_COMMON_FLOPS_H_
#define MKD_COMMON_FLOPS_H_

#include <cstdint>

#include "common/vit_config.h"

namespace mkd {

// FLOPs of one image's forward pass when `kept_patches` of the
// config.num_patches() patches are kept (all of them for a full pass).
double ViTForwardFlops(const ViTConfig& config, int64_t kept_patches);

// FLOPs of one transformer block on n tokens.
double BlockFlops(const ViTConfig& config, int64_t n_tokens);

}  // namespace mkd

#endif  // MKD_COMMON_FLOPS_H_
