#include "common/flops.h"

#include <gtest/gtest.h>

namespace mkd {
namespace {

TEST(FlopsTest, MatchesTheDesignFormula) {
  ViTConfig c = *ViTPreset("deit_small_patch16_224");
  const double d = 384, n = 197;
  double block = 24 * n * d * d + 4 * n * n * d;
  EXPECT_DOUBLE_EQ(BlockFlops(c, 197), block);
  double want = 2 * 196 * (3 * 16 * 16) * d + 12 * block + 2 * d * 1000;
  EXPECT_DOUBLE_EQ(ViTForwardFlops(c, 196), want);
  // DeiT-S is ~4.6 GFLOPs (multiply-adds), i.e. ~9.2 GFLOPs here.
  EXPECT_NEAR(ViTForwardFlops(c, 196) / 1e9, 9.2, 0.1);
}

TEST(FlopsTest, KeepingHalfTheTokensRoughlyHalvesTheCost) {
  ViTConfig c = *ViTPreset("deit_base_patch16_224");
  double ratio = ViTForwardFlops(c, 98) / ViTForwardFlops(c, 196);
  EXPECT_GT(ratio, 0.45);
  EXPECT_LT(ratio, 0.52);
  // Distillation token: one more prefix token and a second head.
  ViTConfig dist = c;
  dist.dist_token = true;
  EXPECT_DOUBLE_EQ(ViTForwardFlops(dist, 196) - ViTForwardFlops(c, 196),
                   12 * (BlockFlops(c, 198) - BlockFlops(c, 197)) + 2 * 768 * 1000);
}

}  // namespace
}  // namespace mkd
