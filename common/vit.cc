#include "common/vit.h"

#include "absl/strings/str_cat.h"
#include "common/masking.h"
#include "common/tensor_util.h"

namespace mkd {

using torch::indexing::Slice;

VisionTransformerImpl::VisionTransformerImpl(const ViTConfig& config) : config_(config) {
  const int d = config.embed_dim;
  const int prefix = config.num_prefix_tokens();
  const int pos_len = config.num_patches() + (config.no_embed_class ? 0 : prefix);
  patch_embed = register_module("patch_embed", PatchEmbed(config.in_chans, config.patch_size, d));
  cls_token = register_parameter("cls_token", torch::zeros({1, 1, d}));
  if (config.dist_token) dist_token = register_parameter("dist_token", torch::zeros({1, 1, d}));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, pos_len, d}));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < config.depth; ++i) {
    BlockOptions o;
    o.dim = d;
    o.num_heads = config.num_heads;
    o.mlp_hidden = config.mlp_hidden();
    o.qkv_bias = config.qkv_bias;
    o.init_values = config.init_values;
    // Stochastic depth grows linearly with depth, as in timm.
    o.drop_path = config.depth > 1 ? config.drop_path_rate * i / (config.depth - 1) : 0.0;
    blocks->push_back(Block(o));
  }
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-6)));
  head = register_module("head", torch::nn::Linear(d, config.num_classes));
  if (config.dist_token) {
    head_dist = register_module("head_dist", torch::nn::Linear(d, config.num_classes));
  }
  InitWeights();
}

void VisionTransformerImpl::InitWeights() {
  torch::NoGradGuard no_grad;
  // timm's 'jax'-free default: trunc-normal(.02) for embeddings and linear
  // weights, zero biases; CLS starts near zero.
  TruncNormal_(pos_embed, 0.02);
  cls_token.normal_(0.0, 1e-6);
  if (dist_token.defined()) TruncNormal_(dist_token, 0.02);
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::Linear>()) {
      TruncNormal_(linear->weight, 0.02);
      if (linear->bias.defined()) linear->bias.zero_();
    }
  }
}

torch::Tensor VisionTransformerImpl::Embed(const torch::Tensor& patches, const torch::Tensor& idx) {
  const int64_t b = patches.size(0);
  const int64_t prefix = config_.num_prefix_tokens();
  const int64_t d = config_.embed_dim;
  torch::Tensor tokens = patch_embed(patches);  // [B, n, D]
  torch::Tensor patch_pos =
      config_.no_embed_class ? pos_embed : pos_embed.index({Slice(), Slice(prefix)});
  if (idx.defined()) {
    // Gather each row's kept positions: [1, N, D] -> [B, k, D].
    torch::Tensor gather_idx = idx.unsqueeze(-1).expand({b, idx.size(1), d});
    patch_pos = patch_pos.expand({b, -1, -1}).gather(1, gather_idx);
  }
  tokens = tokens + patch_pos;
  std::vector<torch::Tensor> parts = {cls_token.expand({b, -1, -1})};
  if (dist_token.defined()) parts.push_back(dist_token.expand({b, -1, -1}));
  torch::Tensor prefix_tokens = torch::cat(parts, 1);  // [B, prefix, D]
  // DeiT-III (no_embed_class) leaves the prefix tokens without position.
  if (!config_.no_embed_class) {
    prefix_tokens = prefix_tokens + pos_embed.index({Slice(), Slice(0, prefix)});
  }
  return torch::cat({prefix_tokens, tokens}, 1);
}

ViTOutput VisionTransformerImpl::Run(torch::Tensor x, const ForwardOptions& options) {
  const int64_t prefix = config_.num_prefix_tokens();
  const size_t depth = blocks->size();
  ViTOutput out;
  for (size_t i = 0; i + 1 < depth; ++i) x = blocks->at<BlockImpl>(i).forward(x);
  Block last = blocks->ptr<BlockImpl>(depth - 1);
  if (options.tokens) {
    if (options.saliency) {
      out.saliency = last->attn->ClsSaliency(last->norm1(x), prefix, options.saliency_mode);
    }
    x = last->forward(x);
  } else {
    // Only the prefix rows feed the heads; the CLS attention row computed
    // here is the saliency, so it comes at no extra cost.
    x = last->ForwardQueries(x, prefix, prefix, options.saliency_mode,
                             options.saliency ? &out.saliency : nullptr);
  }
  x = norm(x);
  if (options.tokens) out.tokens = x;
  out.cls_feature = x.select(1, 0);
  out.logits = head(out.cls_feature);
  if (head_dist) {
    out.dist_logits = head_dist(x.select(1, 1));
    out.logits = (out.logits + out.dist_logits) / 2;
  }
  return out;
}

torch::Tensor VisionTransformerImpl::forward(const torch::Tensor& images) {
  return Forward(images).logits;
}

ViTOutput VisionTransformerImpl::Forward(const torch::Tensor& images,
                                         const ForwardOptions& options) {
  TORCH_CHECK(images.dim() == 4, "images must be [B, C, H, W]");
  torch::Tensor patches = Patchify(images, config_.patch_size);
  return Run(Embed(patches, torch::Tensor()), options);
}

ViTOutput VisionTransformerImpl::ForwardKept(const torch::Tensor& images, const torch::Tensor& idx,
                                             const ForwardOptions& options) {
  return ForwardKeptPatches(CutPatches(images, idx, config_.patch_size), idx, options);
}

ViTOutput VisionTransformerImpl::ForwardKeptPatches(const torch::Tensor& patches,
                                                    const torch::Tensor& idx,
                                                    const ForwardOptions& options) {
  TORCH_CHECK(patches.dim() == 3 && patches.size(2) == config_.patch_dim(),
              "patches must be [B, k, C*p*p]");
  TORCH_CHECK(idx.dim() == 2 && idx.size(0) == patches.size(0) && idx.size(1) == patches.size(1),
              "idx must be [B, k] matching patches");
  return Run(Embed(patches, idx), options);
}

absl::Status ValidateImages(const ViTConfig& config, const torch::Tensor& images) {
  if (!images.is_floating_point()) {
    return absl::InvalidArgumentError(
        absl::StrCat("images must be floating point, not ", c10::toString(images.scalar_type())));
  }
  absl::Status shape =
      CheckShape(images, {-1, config.in_chans, config.img_size, config.img_size}, "images");
  if (!shape.ok()) return shape;
  if (images.size(0) < 1) return absl::InvalidArgumentError("images must hold at least one image");
  return absl::OkStatus();
}

absl::Status ValidateKeptIndices(const torch::Tensor& idx, int64_t batch, int64_t num_patches) {
  if (idx.scalar_type() != torch::kInt64) {
    return absl::InvalidArgumentError(
        absl::StrCat("kept indices must be int64, not ", c10::toString(idx.scalar_type())));
  }
  absl::Status shape = CheckShape(idx, {batch, -1}, "kept indices");
  if (!shape.ok()) return shape;
  const int64_t k = idx.size(1);
  if (k < 1 || k > num_patches) {
    return absl::InvalidArgumentError(
        absl::StrCat("kept indices: k = ", k, " must be in [1, ", num_patches, "]"));
  }
  // Values are checked where they already are on the host: reading them
  // from a device would stop the caller until it caught up (every
  // micro-batch, on the trainer's thread). Indices on a device come from
  // the trainer's own selection, and a teacher server checks what it gets.
  if (!idx.device().is_cpu()) return absl::OkStatus();
  torch::Tensor host = idx.contiguous();
  const int64_t* p = host.data_ptr<int64_t>();
  std::vector<char> seen(static_cast<size_t>(num_patches));
  for (int64_t row = 0; row < batch; ++row) {
    std::fill(seen.begin(), seen.end(), 0);
    for (int64_t j = 0; j < k; ++j) {
      int64_t v = p[row * k + j];
      if (v < 0 || v >= num_patches) {
        return absl::InvalidArgumentError(absl::StrCat("kept indices: row ", row, " has index ", v,
                                                       " outside [0, ", num_patches, ")"));
      }
      if (seen[static_cast<size_t>(v)]) {
        return absl::InvalidArgumentError(
            absl::StrCat("kept indices: row ", row, " repeats index ", v));
      }
      seen[static_cast<size_t>(v)] = 1;
    }
  }
  return absl::OkStatus();
}

}  // namespace mkd
