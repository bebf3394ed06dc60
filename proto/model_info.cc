#include "proto/model_info.h"

#include "absl/strings/str_cat.h"

namespace mkd::proto {

void SetModelArchitecture(const ViTConfig& config, maskedkd::v1::ModelInfo* info) {
  info->set_architecture(absl::StrCat("vit ", config.name, ": depth ", config.depth, ", dim ",
                                      config.embed_dim, ", heads ", config.num_heads, ", patch ",
                                      config.patch_size));
  info->set_img_size(config.img_size);
  info->set_patch_size(config.patch_size);
  info->set_grid_size(config.grid_size());
  info->set_in_chans(config.in_chans);
  info->set_num_classes(config.num_classes);
  info->clear_mean();
  info->clear_std();
  for (double v : config.mean) info->add_mean(static_cast<float>(v));
  for (double v : config.std) info->add_std(static_cast<float>(v));
  info->set_depth(config.depth);
  info->set_embed_dim(config.embed_dim);
  info->set_num_heads(config.num_heads);
  info->set_mlp_ratio(config.mlp_ratio);
  info->set_num_prefix_tokens(config.num_prefix_tokens());
}

ViTConfig ViTConfigFromModelInfo(const maskedkd::v1::ModelInfo& info) {
  ViTConfig c;
  c.name = info.model_id();
  c.img_size = info.img_size();
  c.patch_size = info.patch_size();
  c.in_chans = info.in_chans();
  c.num_classes = info.num_classes();
  c.depth = info.depth();
  c.embed_dim = info.embed_dim();
  c.num_heads = info.num_heads();
  c.mlp_ratio = info.mlp_ratio();
  c.dist_token = info.num_prefix_tokens() == 2;
  c.mean.assign(info.mean().begin(), info.mean().end());
  c.std.assign(info.std().begin(), info.std().end());
  return c;
}

}  // namespace mkd::proto
