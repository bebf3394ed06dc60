#include "common/vit_config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mkd {
namespace {

void ExpectKeyError(const std::string& yaml, const std::string& fragment) {
  auto config = ParseViTConfigYaml(yaml);
  ASSERT_FALSE(config.ok()) << yaml;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(config.status().message()).find(fragment), std::string::npos)
      << config.status();
}

TEST(ViTConfigTest, PresetsMatchTimm) {
  struct Want {
    const char* name;
    int patch, dim, depth, heads;
    bool deit3;
  };
  const Want wants[] = {
      {"deit_tiny_patch16_224", 16, 192, 12, 3, false},
      {"deit_small_patch16_224", 16, 384, 12, 6, false},
      {"deit_base_patch16_224", 16, 768, 12, 12, false},
      {"deit3_small_patch16_224", 16, 384, 12, 6, true},
      {"deit3_medium_patch16_224", 16, 512, 12, 8, true},
      {"deit3_base_patch16_224", 16, 768, 12, 12, true},
      {"deit3_large_patch16_224", 16, 1024, 24, 16, true},
      {"deit3_huge_patch14_224", 14, 1280, 32, 16, true},
  };
  EXPECT_EQ(ViTPresetNames().size(), std::size(wants));
  for (const Want& w : wants) {
    auto c = ViTPreset(w.name);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->name, w.name);
    EXPECT_EQ(c->img_size, 224);
    EXPECT_EQ(c->patch_size, w.patch) << w.name;
    EXPECT_EQ(c->embed_dim, w.dim) << w.name;
    EXPECT_EQ(c->depth, w.depth) << w.name;
    EXPECT_EQ(c->num_heads, w.heads) << w.name;
    EXPECT_EQ(c->num_classes, 1000);
    EXPECT_EQ(c->no_embed_class, w.deit3) << w.name;
    EXPECT_EQ(c->init_values.has_value(), w.deit3) << w.name;
    EXPECT_TRUE(ValidateViTConfig(*c).ok());
  }
  EXPECT_EQ(ViTPreset("deit_small_patch16_224")->num_patches(), 196);
  auto unknown = ViTPreset("resnet50");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(unknown.status().message()).find("deit_tiny_patch16_224"),
            std::string::npos);
}

TEST(ViTConfigTest, YamlWithTimmKeys) {
  auto c = ParseViTConfigYaml(R"(
img_size: 28
patch_size: 7
in_chans: 1
embed_dim: 64
depth: 3
num_heads: 4
mlp_ratio: 2.5
num_classes: 10
qkv_bias: false
init_values: 0.1
no_embed_class: true
dist_token: true
drop_path_rate: 0.1
mean: [0.5]
std: [0.25]
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "custom");
  EXPECT_EQ(c->grid_size(), 4);
  EXPECT_EQ(c->patch_dim(), 49);
  EXPECT_EQ(c->mlp_hidden(), 160);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_DOUBLE_EQ(*c->init_values, 0.1);
  EXPECT_EQ(c->num_prefix_tokens(), 2);
  EXPECT_EQ(c->mean, std::vector<double>{0.5});
}

TEST(ViTConfigTest, PresetOverriddenKeyByKey) {
  auto c =
      ParseViTConfigYaml("preset: deit3_small_patch16_224\nnum_classes: 10\ninit_values: null\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "deit3_small_patch16_224");
  EXPECT_EQ(c->embed_dim, 384);
  EXPECT_EQ(c->num_classes, 10);
  EXPECT_TRUE(c->no_embed_class);
  EXPECT_FALSE(c->init_values.has_value());
}

TEST(ViTConfigTest, ErrorsNameTheKey) {
  ExpectKeyError("depht: 3\n", "'depht': unknown key");
  ExpectKeyError("depth: three\n", "'depth': expected an integer, got 'three'");
  ExpectKeyError("depth: 2.5\n", "'depth'");
  ExpectKeyError("qkv_bias: maybe\n", "'qkv_bias'");
  ExpectKeyError("mean: 0.5\n", "'mean': expected a list");
  ExpectKeyError("preset: vit_gigantic\n", "'preset'");
  ExpectKeyError("patch_size: 15\n", "'patch_size': 15 does not divide img_size 224");
  ExpectKeyError("num_heads: 5\n", "'num_heads': 5 does not divide embed_dim 768");
  ExpectKeyError("embed_dim: 0\n", "'embed_dim': must be positive");
  // Found by fuzz/config_fuzz: 1e112 overflowed the int MLP width.
  ExpectKeyError("mlp_ratio: 1e112\n", "'mlp_ratio': must be at most 64");
  EXPECT_EQ(ParseViTConfigYaml("? [a]\n: 1\n").status().code(), absl::StatusCode::kInvalidArgument);
  ExpectKeyError("img_size: 1000000\npatch_size: 1\n", "'img_size': must be at most 16384");
  ExpectKeyError("in_chans: 1\nmean: [0.5, 0.5, 0.5]\nstd: [1]\n",
                 "'mean': has 3 entries, in_chans is 1");
  ExpectKeyError("in_chans: 1\nstd: [1, 1]\n", "'std': has 2 entries, in_chans is 1");
  ExpectKeyError("drop_path_rate: 1.5\n", "'drop_path_rate'");
  ExpectKeyError("std: [1, 0, 1]\n", "'std'");
  auto not_map = ParseViTConfigYaml("- 1\n- 2\n");
  EXPECT_FALSE(not_map.ok());
  auto bad_yaml = ParseViTConfigYaml("depth: [1,\n");
  EXPECT_FALSE(bad_yaml.ok());
}

TEST(ViTConfigTest, MeanAndStdDefaultsFollowInChans) {
  // No mean/std written: one entry per channel, the ImageNet average.
  auto grey = ParseViTConfigYaml("in_chans: 1\n");
  ASSERT_TRUE(grey.ok()) << grey.status();
  ASSERT_EQ(grey->mean.size(), 1u);
  EXPECT_NEAR(grey->mean[0], (0.485 + 0.456 + 0.406) / 3, 1e-12);
  EXPECT_NEAR(grey->std[0], (0.229 + 0.224 + 0.225) / 3, 1e-12);
  // Written ones are kept as written; RGB keeps ImageNet's per channel.
  auto own = ParseViTConfigYaml("in_chans: 1\nmean: [0.25]\n");
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->mean, std::vector<double>{0.25});
  EXPECT_EQ(own->std.size(), 1u);
  auto rgb = ParseViTConfigYaml("depth: 2\n");
  ASSERT_TRUE(rgb.ok());
  EXPECT_EQ(rgb->mean, (std::vector<double>{0.485, 0.456, 0.406}));
}

TEST(ViTConfigTest, ResolveTakesPresetOrFile) {
  EXPECT_TRUE(ResolveViTConfig("deit_tiny_patch16_224").ok());
  auto file = ResolveViTConfig("tests/golden/deit3.yaml");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->img_size, 32);
  auto missing = ResolveViTConfig("no/such/model.yaml");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace mkd
