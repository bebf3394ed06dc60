#include "common/vit_weights.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "common/file_util.h"
#include "common/golden_json.h"
#include "common/tensor_util.h"

namespace mkd {
namespace {

ViTConfig Small(bool deit3 = false) {
  ViTConfig c;
  c.img_size = 32;
  c.patch_size = 8;
  c.embed_dim = 32;
  c.depth = 2;
  c.num_heads = 2;
  c.num_classes = 5;
  if (deit3) {
    c.init_values = 0.1;
    c.no_embed_class = true;
  }
  return c;
}

std::string Tmp(const std::string& name) { return ::testing::TempDir() + "/" + name; }

TEST(VitWeightsTest, SaveLoadRoundTripIsExact) {
  torch::manual_seed(0);
  VisionTransformer a(Small(true));
  torch::manual_seed(1);
  VisionTransformer b(Small(true));
  std::string path = Tmp("rt.safetensors");
  ASSERT_TRUE(SaveViTWeights(*a, path, {{"epoch", "3"}}).ok());
  auto report = LoadViTWeightsFile(*b, path);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->clean());
  auto pa = a->named_parameters();
  for (const auto& p : b->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), pa[p.key()])) << p.key();
  }
  auto file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->metadata.at("format"), "pt");
  EXPECT_EQ(file->metadata.at("epoch"), "3");
}

TEST(VitWeightsTest, CanonicalKeyMapsForeignNames) {
  EXPECT_EQ(CanonicalKey("module.blocks.3.gamma_1"), "blocks.3.ls1.gamma");
  EXPECT_EQ(CanonicalKey("model.blocks.0.gamma_2"), "blocks.0.ls2.gamma");
  EXPECT_EQ(CanonicalKey("module.model.pos_embed"), "pos_embed");
  EXPECT_EQ(CanonicalKey("head.weight"), "head.weight");
}

TEST(VitWeightsTest, LoadsOriginalDeit3NamesWithPrefixes) {
  torch::manual_seed(0);
  VisionTransformer a(Small(true));
  auto sd = ViTStateDict(*a);
  ASSERT_TRUE(sd.ok());
  SafetensorsFile renamed;
  for (auto& [key, array] : sd->tensors) {
    std::string k = key;
    size_t pos;
    if ((pos = k.find("ls1.gamma")) != std::string::npos) k.replace(pos, 9, "gamma_1");
    if ((pos = k.find("ls2.gamma")) != std::string::npos) k.replace(pos, 9, "gamma_2");
    renamed.tensors["module." + k] = array;
  }
  torch::manual_seed(1);
  VisionTransformer b(Small(true));
  auto report = LoadViTWeights(*b, renamed);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(torch::equal(b->blocks->ptr<BlockImpl>(1)->ls2->gamma,
                           a->blocks->ptr<BlockImpl>(1)->ls2->gamma));
}

TEST(VitWeightsTest, ReportsMissingUnexpectedAndMismatchedByName) {
  torch::manual_seed(0);
  VisionTransformer a(Small());
  auto sd = ViTStateDict(*a);
  ASSERT_TRUE(sd.ok());
  sd->tensors.erase("blocks.1.mlp.fc2.bias");
  sd->tensors["head_dist.weight"] = sd->tensors["head.weight"];
  HostArray wrong = sd->tensors["norm.weight"];
  wrong.shape = {16, 2};
  sd->tensors["norm.weight"] = wrong;

  torch::manual_seed(1);
  VisionTransformer b(Small());
  torch::Tensor before = b->head->weight.clone();
  auto strict = LoadViTWeights(*b, *sd);
  ASSERT_FALSE(strict.ok());
  std::string msg(strict.status().message());
  EXPECT_NE(msg.find("missing keys: blocks.1.mlp.fc2.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected keys: head_dist.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("norm.weight: file [16, 2] vs model [32]"), std::string::npos) << msg;
  EXPECT_TRUE(torch::equal(before, b->head->weight)) << "strict failure must not change the model";

  auto lenient = LoadViTWeights(*b, *sd, /*strict=*/false);
  ASSERT_TRUE(lenient.ok());
  EXPECT_EQ(lenient->missing, std::vector<std::string>{"blocks.1.mlp.fc2.bias"});
  EXPECT_EQ(lenient->mismatched.size(), 1u);
  EXPECT_TRUE(torch::equal(a->head->weight, b->head->weight));
}

TEST(VitWeightsTest, CastsHalfPrecisionCheckpoints) {
  torch::manual_seed(0);
  VisionTransformer a(Small());
  auto sd = ViTStateDict(*a);
  ASSERT_TRUE(sd.ok());
  for (auto& [key, array] : sd->tensors) {
    auto t = ToTensor(array);
    array = *FromTensor(t->to(torch::kBFloat16));
  }
  VisionTransformer b(Small());
  ASSERT_TRUE(LoadViTWeights(*b, *sd).ok());
  EXPECT_LE((a->pos_embed - b->pos_embed).abs().max().item<double>(), 1e-2);
  // Integer data cannot become a float parameter.
  sd->tensors["head.bias"] = *FromTensor(torch::zeros({5}, torch::kInt64));
  auto bad = LoadViTWeights(*b, *sd);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("head.bias: dtype Long"), std::string::npos)
      << bad.status();
}

TEST(VitWeightsTest, ResizesPositionalEmbeddingToANewGrid) {
  // Golden values from torch.nn.functional.interpolate (bicubic, antialias),
  // written by scripts/make_golden.py.
  nlohmann::json json = LoadGoldenJson();
  torch::Tensor pos = JsonTensor(json["pos_embed_4x4"]);
  for (auto [grid, key] : {std::pair{6, "pos_embed_6x6"}, std::pair{2, "pos_embed_2x2"}}) {
    auto resized = ResizePosEmbed(pos, 1, grid);
    ASSERT_TRUE(resized.ok()) << resized.status();
    EXPECT_LE((*resized - JsonTensor(json[key])).abs().max().item<double>(), 1e-6) << key;
  }
  EXPECT_FALSE(ResizePosEmbed(torch::zeros({1, 1 + 15, 8}), 1, 4).ok()) << "15 is not square";

  // A model at img 48 (6x6 grid) loads a 4x4-grid checkpoint.
  torch::manual_seed(0);
  VisionTransformer a(Small());
  ViTConfig big = Small();
  big.img_size = 48;
  VisionTransformer b(big);
  auto sd = ViTStateDict(*a);
  auto report = LoadViTWeights(*b, *sd);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->resized, std::vector<std::string>{"pos_embed"});
  EXPECT_EQ(b->pos_embed.sizes(), (torch::IntArrayRef{1, 37, 32}));
  EXPECT_TRUE(torch::equal(b->pos_embed.narrow(1, 0, 1), a->pos_embed.narrow(1, 0, 1)));
}

TEST(VitWeightsTest, CorruptFileIsAnErrorNamingThePath) {
  std::string path = Tmp("corrupt.safetensors");
  ASSERT_TRUE(WriteFileAtomic(path, std::string("\x10\0\0\0\0\0\0\0{\"a\":", 13)).ok());
  VisionTransformer m(Small());
  auto r = LoadViTWeightsFile(*m, path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find(path), std::string::npos) << r.status();
}

}  // namespace
}  // namespace mkd
