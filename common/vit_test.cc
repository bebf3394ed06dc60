#include "common/vit.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>
#include <string>

#include "common/masking.h"

namespace mkd {
namespace {

ViTConfig Small() {
  ViTConfig c;
  c.img_size = 32;
  c.patch_size = 8;
  c.embed_dim = 32;
  c.depth = 2;
  c.num_heads = 2;
  c.num_classes = 5;
  return c;
}

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

TEST(ViTTest, ParameterNamesAreTimmKeys) {
  torch::manual_seed(0);
  VisionTransformer model(*ViTPreset("deit_tiny_patch16_224"));
  std::set<std::string> keys;
  for (const auto& p : model->named_parameters()) keys.insert(p.key());
  EXPECT_EQ(keys.size(), 152u);
  for (const char* k :
       {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
        "blocks.0.norm1.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
        "blocks.0.attn.proj.weight", "blocks.0.norm2.bias", "blocks.0.mlp.fc1.weight",
        "blocks.11.mlp.fc2.bias", "norm.weight", "head.weight", "head.bias"}) {
    EXPECT_TRUE(keys.count(k)) << k;
  }
  EXPECT_EQ(model->pos_embed.sizes(), (torch::IntArrayRef{1, 197, 192}));
  EXPECT_EQ(model->patch_embed->proj->weight.sizes(), (torch::IntArrayRef{192, 3, 16, 16}));

  ViTConfig deit3 = Small();
  deit3.init_values = 1e-6;
  deit3.no_embed_class = true;
  VisionTransformer m3(deit3);
  auto params = m3->named_parameters();
  ASSERT_NE(params.find("blocks.1.ls2.gamma"), nullptr);
  EXPECT_FLOAT_EQ(params["blocks.1.ls1.gamma"][0].item<float>(), 1e-6f);
  EXPECT_EQ(m3->pos_embed.size(1), 16) << "no_embed_class: patches only";
}

TEST(ViTTest, KeptForwardWithEveryPatchEqualsFullForward) {
  torch::manual_seed(1);
  VisionTransformer model(Small());
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::randn({3, 3, 32, 32});
  torch::Tensor all = torch::arange(16).unsqueeze(0).expand({3, 16}).contiguous();
  EXPECT_LE(MaxDiff(model->ForwardKept(x, all).logits, model->forward(x)), 1e-6);
}

TEST(ViTTest, KeptForwardIgnoresIndexOrderAndUsesOnlyKeptPixels) {
  torch::manual_seed(2);
  VisionTransformer model(Small());
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::randn({2, 3, 32, 32});
  torch::Tensor idx = torch::tensor({{1, 5, 9, 14}, {0, 2, 3, 15}}, torch::kInt64);
  torch::Tensor shuffled = idx.index_select(1, torch::tensor({3, 0, 2, 1}));
  torch::Tensor a = model->ForwardKept(x, idx).logits;
  EXPECT_LE(MaxDiff(a, model->ForwardKept(x, shuffled).logits), 1e-5);
  // Changing a dropped patch's pixels does not change the output.
  torch::Tensor y = x.clone();
  y.index_put_(
      {0, torch::indexing::Slice(), torch::indexing::Slice(0, 8), torch::indexing::Slice(0, 8)},
      100.0);  // Patch 0 of image 0: not kept.
  EXPECT_LE(MaxDiff(a, model->ForwardKept(y, idx).logits), 1e-6);
  // ...but changing a kept one does.
  y.index_put_(
      {0, torch::indexing::Slice(), torch::indexing::Slice(0, 8), torch::indexing::Slice(8, 16)},
      100.0);  // Patch 1: kept.
  EXPECT_GT(MaxDiff(a, model->ForwardKept(y, idx).logits), 1e-3);
}

TEST(ViTTest, SaliencyIsADistributionOverPatches) {
  torch::manual_seed(3);
  VisionTransformer model(Small());
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::randn({2, 3, 32, 32});
  ForwardOptions o;
  o.saliency = true;
  ViTOutput all_keys = model->Forward(x, o);
  ASSERT_EQ(all_keys.saliency.sizes(), (torch::IntArrayRef{2, 16}));
  torch::Tensor sums = all_keys.saliency.sum(1);
  // The CLS key takes some mass, so the patch part sums to less than one.
  EXPECT_TRUE((sums < 1.0).all().item<bool>());
  EXPECT_TRUE((all_keys.saliency > 0).all().item<bool>());
  o.saliency_mode = SaliencyMode::kPatchKeys;
  torch::Tensor patch = model->Forward(x, o).saliency;
  EXPECT_LE(MaxDiff(patch.sum(1), torch::ones({2})), 1e-6);
}

TEST(ViTTest, DistTokenAveragesHeads) {
  torch::manual_seed(4);
  ViTConfig c = Small();
  c.dist_token = true;
  VisionTransformer model(c);
  model->eval();
  torch::NoGradGuard no_grad;
  EXPECT_EQ(model->pos_embed.size(1), 18);
  torch::Tensor x = torch::randn({2, 3, 32, 32});
  ForwardOptions o;
  o.tokens = true;
  o.saliency = true;
  ViTOutput full = model->Forward(x, o);
  EXPECT_EQ(full.tokens.sizes(), (torch::IntArrayRef{2, 18, 32}));
  EXPECT_EQ(full.saliency.sizes(), (torch::IntArrayRef{2, 16}));
  EXPECT_LE(MaxDiff(full.logits, (model->head(full.tokens.select(1, 0)) +
                                  model->head_dist(full.tokens.select(1, 1))) /
                                     2),
            1e-6);
  // The prefix-only last block gives the same logits and saliency.
  ViTOutput fast = model->Forward(x, ForwardOptions{true});
  EXPECT_LE(MaxDiff(fast.logits, full.logits), 1e-5);
  EXPECT_LE(MaxDiff(fast.saliency, full.saliency), 1e-6);
  torch::Tensor idx = torch::tensor({{0, 7}, {3, 4}}, torch::kInt64);
  EXPECT_EQ(model->ForwardKept(x, idx).logits.sizes(), (torch::IntArrayRef{2, 5}));
}

TEST(ViTTest, DropPathOnlyInTraining) {
  torch::manual_seed(5);
  ViTConfig c = Small();
  c.drop_path_rate = 0.5;
  VisionTransformer model(c);
  torch::Tensor x = torch::randn({8, 3, 32, 32});
  model->eval();
  torch::Tensor a = model->forward(x);
  EXPECT_LE(MaxDiff(a, model->forward(x)), 0.0);
  model->train();
  torch::Tensor b = model->forward(x);
  EXPECT_GT(MaxDiff(a, b), 1e-4);
  b.sum().backward();
  EXPECT_TRUE(model->blocks->ptr<BlockImpl>(0)->attn->qkv->weight.grad().defined());
}

TEST(ViTTest, GradientsFlowThroughThePrefixOnlyPath) {
  torch::manual_seed(6);
  VisionTransformer model(Small());
  torch::Tensor x = torch::randn({2, 3, 32, 32});
  model->Forward(x).logits.sum().backward();
  auto last = model->blocks->ptr<BlockImpl>(1);
  EXPECT_GT(last->mlp->fc1->weight.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(model->pos_embed.grad().abs().sum().item<double>(), 0.0);
}

TEST(ViTTest, ValidateImagesAndIndices) {
  ViTConfig c = Small();
  EXPECT_TRUE(ValidateImages(c, torch::zeros({2, 3, 32, 32})).ok());
  auto bad = ValidateImages(c, torch::zeros({2, 1, 32, 32}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.message()),
            "images must have shape [*, 3, 32, 32] but has [2, 1, 32, 32]");
  EXPECT_FALSE(ValidateImages(c, torch::zeros({2, 3, 32, 32}, torch::kInt64)).ok());
  EXPECT_FALSE(ValidateImages(c, torch::zeros({0, 3, 32, 32})).ok());

  auto check = [](torch::Tensor idx) { return ValidateKeptIndices(idx, 2, 16); };
  EXPECT_TRUE(check(torch::tensor({{0, 15}, {3, 2}}, torch::kInt64)).ok());
  auto range = check(torch::tensor({{0, 16}, {3, 2}}, torch::kInt64));
  EXPECT_EQ(std::string(range.message()), "kept indices: row 0 has index 16 outside [0, 16)");
  auto neg = check(torch::tensor({{0, 1}, {-1, 2}}, torch::kInt64));
  EXPECT_NE(std::string(neg.message()).find("row 1 has index -1"), std::string::npos);
  auto dup = check(torch::tensor({{0, 1}, {2, 2}}, torch::kInt64));
  EXPECT_EQ(std::string(dup.message()), "kept indices: row 1 repeats index 2");
  EXPECT_FALSE(check(torch::tensor({{0, 1}, {2, 3}}, torch::kInt32)).ok());
  EXPECT_FALSE(check(torch::zeros({3, 2}, torch::kInt64)).ok());
  EXPECT_FALSE(check(torch::zeros({2, 17}, torch::kInt64)).ok());
  EXPECT_FALSE(check(torch::zeros({2, 0}, torch::kInt64)).ok());
}

}  // namespace
}  // namespace mkd
