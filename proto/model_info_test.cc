#include "proto/model_info.h"

#include <gtest/gtest.h>

#include "common/vit_config.h"

namespace mkd::proto {
namespace {

// Every preset survives the wire: what a student rebuilds from a teacher's
// ModelInfo is the teacher's architecture (mean and std travel as float).
TEST(ModelInfoTest, EveryPresetRoundTrips) {
  for (const std::string& name : ViTPresetNames()) {
    SCOPED_TRACE(name);
    absl::StatusOr<ViTConfig> preset = ViTPreset(name);
    ASSERT_TRUE(preset.ok()) << preset.status();
    ViTConfig c = *preset;
    c.mean = {0.5, 0.25, 0.125};
    c.std = {0.3, 0.2, 0.1};
    maskedkd::v1::ModelInfo info;
    info.set_model_id("m@1234");
    SetModelArchitecture(c, &info);
    EXPECT_EQ(info.grid_size(), c.grid_size());
    EXPECT_EQ(info.num_prefix_tokens(), c.num_prefix_tokens());
    const ViTConfig back = ViTConfigFromModelInfo(info);
    EXPECT_EQ(back.name, "m@1234");
    EXPECT_EQ(back.img_size, c.img_size);
    EXPECT_EQ(back.patch_size, c.patch_size);
    EXPECT_EQ(back.in_chans, c.in_chans);
    EXPECT_EQ(back.num_classes, c.num_classes);
    EXPECT_EQ(back.depth, c.depth);
    EXPECT_EQ(back.embed_dim, c.embed_dim);
    EXPECT_EQ(back.num_heads, c.num_heads);
    EXPECT_EQ(back.mlp_ratio, c.mlp_ratio);
    EXPECT_EQ(back.dist_token, c.dist_token);
    ASSERT_EQ(back.mean.size(), c.mean.size());
    ASSERT_EQ(back.std.size(), c.std.size());
    for (size_t i = 0; i < c.mean.size(); ++i) {
      EXPECT_FLOAT_EQ(back.mean[i], c.mean[i]);
      EXPECT_FLOAT_EQ(back.std[i], c.std[i]);
    }
    EXPECT_TRUE(ValidateViTConfig(back).ok());
  }
}

TEST(ModelInfoTest, SettingTwiceReplacesMeanAndStd) {
  ViTConfig c;
  maskedkd::v1::ModelInfo info;
  SetModelArchitecture(c, &info);
  SetModelArchitecture(c, &info);
  EXPECT_EQ(info.mean_size(), 3);
  EXPECT_EQ(info.std_size(), 3);
}

}  // namespace
}  // namespace mkd::proto
