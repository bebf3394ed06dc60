#include "student_worker/transforms.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace mkd::student {
namespace {

Example Grey(int h, int w) {
  Example e;
  e.channels = 1;
  e.height = h;
  e.width = w;
  for (int i = 0; i < h * w; ++i) e.pixels.push_back(static_cast<uint8_t>(i % 256));
  return e;
}

TransformConfig Config(int size, int channels) {
  TransformConfig c;
  c.img_size = size;
  c.channels = channels;
  c.mean.assign(channels, 0.5);
  c.std.assign(channels, 0.25);
  return c;
}

TEST(TransformsTest, EvalIsResizeCenterCropNormalise) {
  TransformConfig c = Config(28, 3);
  torch::Tensor x = EvalTransform(Grey(28, 28), c);
  ASSERT_EQ(x.sizes(), (torch::IntArrayRef{3, 28, 28}));
  // Grey is repeated to RGB; pixel 1 is 1/255, normalised by (0.5, 0.25).
  EXPECT_NEAR(x[2][0][1].item<float>(), (1 / 255.0 - 0.5) / 0.25, 1e-6);
  EXPECT_TRUE(torch::equal(x[0], x[2]));
  c.img_size = 16;
  c.crop_pct = 0.5;  // Short side to 32, then the central 16x16.
  EXPECT_EQ(EvalTransform(Grey(28, 56), c).sizes(), (torch::IntArrayRef{3, 16, 16}));
}

TEST(TransformsTest, TrainIsDeterministicForASeedAndVariesAcrossSeeds) {
  TransformConfig c = Config(24, 1);
  c.random_resized_crop = true;
  c.pad_crop = 2;
  c.hflip = true;
  c.randaugment_ops = 2;
  c.random_erasing = 0.5;
  Example e = Grey(28, 28);
  Rng a(7), b(7), d(8);
  torch::Tensor xa = TrainTransform(e, c, a);
  EXPECT_EQ(xa.sizes(), (torch::IntArrayRef{1, 24, 24}));
  EXPECT_TRUE(torch::equal(xa, TrainTransform(e, c, b)));
  EXPECT_FALSE(torch::equal(xa, TrainTransform(e, c, d)));
}

TEST(TransformsTest, StepsKeepShapesAndRanges) {
  Rng rng(1);
  torch::Tensor x = torch::rand({3, 20, 30});
  EXPECT_EQ(Resize(x, 10, 15).sizes(), (torch::IntArrayRef{3, 10, 15}));
  EXPECT_EQ(CenterCrop(x, 20).sizes(), (torch::IntArrayRef{3, 20, 20}));
  EXPECT_EQ(RandomResizedCrop(x, 12, 0.08, rng).sizes(), (torch::IntArrayRef{3, 12, 12}));
  torch::Tensor shifted = PadCrop(x, 4, rng);
  EXPECT_EQ(shifted.sizes(), x.sizes());
  for (int i = 0; i < 20; ++i) {
    torch::Tensor y = RandAugment(x, 3, 9, rng);
    EXPECT_EQ(y.sizes(), x.sizes());
    EXPECT_GE(y.min().item<float>(), -1e-5);
    EXPECT_LE(y.max().item<float>(), 1 + 1e-5);
  }
  torch::Tensor z = torch::zeros({3, 20, 30});
  RandomErase(z, rng);
  EXPECT_GT((z != 0).sum().item<int64_t>(), 0) << "a box was filled with noise";
}

TEST(TransformsTest, MixupAndCutmixTargetsSumToOne) {
  torch::Tensor labels = torch::tensor({0, 1, 2, 3}, torch::kInt64);
  for (auto [mixup, cutmix] : {std::pair{0.8, 0.0}, std::pair{0.0, 1.0}, std::pair{0.8, 1.0}}) {
    MixConfig c;
    c.mixup_alpha = mixup;
    c.cutmix_alpha = cutmix;
    c.label_smoothing = 0.1;
    for (int seed = 0; seed < 5; ++seed) {
      Rng rng(seed);
      torch::Tensor images =
          torch::arange(4, torch::kFloat32).reshape({4, 1, 1, 1}).expand({4, 3, 8, 8}).contiguous();
      torch::Tensor t = MixBatch(images, labels, 5, c, rng);
      ASSERT_EQ(t.sizes(), (torch::IntArrayRef{4, 5}));
      EXPECT_LE((t.sum(1) - 1).abs().max().item<double>(), 1e-6);
      // Image 0 is mixed with image 3, so its target weight of class 3
      // equals the share of image 3's pixels in it (plus smoothing).
      double share3 = (images[0].mean().item<double>()) / 3.0;
      EXPECT_NEAR(t[0][3].item<double>(), 0.02 + share3 * 0.9, 1e-5);
    }
  }
  MixConfig off;
  off.label_smoothing = 0.1;
  Rng rng(0);
  torch::Tensor images = torch::rand({4, 3, 8, 8});
  torch::Tensor before = images.clone();
  torch::Tensor t = MixBatch(images, labels, 5, off, rng);
  EXPECT_TRUE(torch::equal(images, before));
  EXPECT_NEAR(t[1][1].item<double>(), 0.92, 1e-6);
  EXPECT_NEAR(t[1][0].item<double>(), 0.02, 1e-6);
}

TEST(TransformsTest, ConfigErrorsNameTheField) {
  TransformConfig c = Config(28, 3);
  c.mean = {0.5};
  EXPECT_NE(std::string(ValidateTransformConfig(c).message()).find("'mean'"), std::string::npos);
  c = Config(28, 2);
  EXPECT_NE(std::string(ValidateTransformConfig(c).message()).find("'channels'"),
            std::string::npos);
  c = Config(28, 1);
  c.random_erasing = 2;
  EXPECT_NE(std::string(ValidateTransformConfig(c).message()).find("'random_erasing'"),
            std::string::npos);
}

}  // namespace
}  // namespace mkd::student
