// Parity of the C++ ViT with an independent implementation: torchvision's
// VisionTransformer, run by scripts/make_golden.py, whose outputs are the
// golden files under tests/golden/. Tolerance: 1e-4 max abs in fp32.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "common/masking.h"
#include "common/npy.h"
#include "common/tensor_util.h"
#include "common/vit.h"
#include "common/vit_config.h"
#include "common/vit_weights.h"

namespace mkd {
namespace {

constexpr double kTol = 1e-4;
const std::string kDir = "tests/golden/";

torch::Tensor Golden(const std::string& name) {
  auto array = ReadNpy(kDir + name);
  EXPECT_TRUE(array.ok()) << array.status();
  auto t = ToTensor(*array);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

class ParityTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto config = ResolveViTConfig(kDir + GetParam() + ".yaml");
    ASSERT_TRUE(config.ok()) << config.status();
    model_ = VisionTransformer(*config);
    auto report = LoadViTWeightsFile(*model_, kDir + GetParam() + ".safetensors");
    ASSERT_TRUE(report.ok()) << report.status();
    model_->eval();
    images_ = Golden("images.npy");
    idx_ = Golden("kept_idx.npy");
  }

  torch::NoGradGuard no_grad_;
  VisionTransformer model_{nullptr};
  torch::Tensor images_;
  torch::Tensor idx_;
};

TEST_P(ParityTest, FullForwardLogitsAndTokens) {
  ForwardOptions options;
  options.tokens = true;
  ViTOutput out = model_->Forward(images_, options);
  EXPECT_LE(MaxDiff(out.logits, Golden(GetParam() + "_logits.npy")), kTol);
  EXPECT_LE(MaxDiff(out.tokens, Golden(GetParam() + "_tokens.npy")), kTol);
}

TEST_P(ParityTest, PrefixOnlyLastBlockGivesSameLogits) {
  ViTOutput out = model_->Forward(images_);
  EXPECT_LE(MaxDiff(out.logits, Golden(GetParam() + "_logits.npy")), kTol);
}

TEST_P(ParityTest, KeptTokenForward) {
  torch::Tensor want = Golden(GetParam() + "_kept_logits.npy");
  EXPECT_LE(MaxDiff(model_->ForwardKept(images_, idx_).logits, want), kTol);
  torch::Tensor patches = CutPatches(images_, idx_, model_->config().patch_size);
  EXPECT_LE(MaxDiff(model_->ForwardKeptPatches(patches, idx_).logits, want), kTol);
}

TEST_P(ParityTest, SaliencyBothSemantics) {
  for (bool tokens : {false, true}) {
    ForwardOptions options;
    options.saliency = true;
    options.tokens = tokens;
    options.saliency_mode = SaliencyMode::kAllKeys;
    EXPECT_LE(MaxDiff(model_->Forward(images_, options).saliency,
                      Golden(GetParam() + "_saliency_all.npy")),
              kTol)
        << "tokens=" << tokens;
    options.saliency_mode = SaliencyMode::kPatchKeys;
    EXPECT_LE(MaxDiff(model_->Forward(images_, options).saliency,
                      Golden(GetParam() + "_saliency_patch.npy")),
              kTol)
        << "tokens=" << tokens;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ParityTest, ::testing::Values("deit", "deit3"));

}  // namespace
}  // namespace mkd
