#include "common/masking.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>
#include <string>

#include "common/golden_json.h"

namespace mkd {
namespace {

TEST(MaskingTest, KeepCount) {
  EXPECT_EQ(*KeepCount(0.5, 196), 98);
  EXPECT_EQ(*KeepCount(0.25, 196), 49);
  EXPECT_EQ(*KeepCount(0.75, 196), 147);
  EXPECT_EQ(*KeepCount(1.0, 196), 196);
  EXPECT_EQ(*KeepCount(0.001, 196), 1) << "never zero tokens";
  EXPECT_EQ(*KeepCount(0.5, 15), 8) << "round half away from zero";
  for (double bad : {0.0, -0.5, 1.01, std::nan("")}) {
    auto k = KeepCount(bad, 196);
    ASSERT_FALSE(k.ok()) << bad;
    EXPECT_NE(std::string(k.status().message()).find("keep_ratio"), std::string::npos);
  }
  EXPECT_FALSE(KeepCount(0.5, 0).ok());
}

TEST(MaskingTest, CriteriaNames) {
  for (const char* name : {"student_topk", "random", "bottomk", "all", "teacher_topk"}) {
    auto c = ParseMaskCriterion(name);
    ASSERT_TRUE(c.ok()) << name;
    EXPECT_EQ(MaskCriterionName(*c), name);
  }
  auto bad = ParseMaskCriterion("topk");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("'topk'"), std::string::npos);
}

TEST(MaskingTest, TopkBottomkAllSelectTheRightPatches) {
  torch::Tensor scores = torch::tensor({{0.1, 0.9, 0.3, 0.8, 0.0}, {0.5, 0.4, 0.3, 0.2, 0.6}});
  torch::Tensor top = SelectPatches(scores, 2, MaskCriterion::kStudentTopk);
  EXPECT_TRUE(torch::equal(top, torch::tensor({{1, 3}, {0, 4}}, torch::kInt64)));
  torch::Tensor bottom = SelectPatches(scores, 2, MaskCriterion::kBottomk);
  EXPECT_TRUE(torch::equal(bottom, torch::tensor({{0, 4}, {2, 3}}, torch::kInt64)));
  torch::Tensor teacher = SelectPatches(scores, 1, MaskCriterion::kTeacherTopk);
  EXPECT_TRUE(torch::equal(teacher, torch::tensor({{1}, {4}}, torch::kInt64)));
  torch::Tensor all = SelectPatches(scores, 5, MaskCriterion::kAll);
  EXPECT_TRUE(torch::equal(all, torch::arange(5).repeat({2, 1})));
}

TEST(MaskingTest, RandomIsSeededUniqueAndSorted) {
  torch::Tensor scores = torch::zeros({64, 16});
  auto gen = [] { return at::detail::createCPUGenerator(42); };
  torch::Tensor a = SelectPatches(scores, 8, MaskCriterion::kRandom, gen());
  torch::Tensor b = SelectPatches(scores, 8, MaskCriterion::kRandom, gen());
  EXPECT_TRUE(torch::equal(a, b));
  torch::Tensor c =
      SelectPatches(scores, 8, MaskCriterion::kRandom, at::detail::createCPUGenerator(7));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_TRUE((a.diff(1, 1) > 0).all().item<bool>()) << "sorted, hence unique";
  // Every patch is chosen sometimes: about half the rows pick each one.
  torch::Tensor counts = torch::zeros({16}, torch::kInt64)
                             .scatter_add_(0, a.flatten(), torch::ones({a.numel()}, torch::kInt64));
  EXPECT_GT(counts.min().item<int64_t>(), 16);
  EXPECT_LT(counts.max().item<int64_t>(), 48);
}

TEST(MaskingTest, TopkMixedKeepsTheTopAndDrawsTheRestAtRandom) {
  // Scores rise with the index, so the top patches are the last ones.
  torch::Tensor scores = torch::arange(16, torch::kFloat32).repeat({256, 1});
  auto gen = [](uint64_t seed) { return at::detail::createCPUGenerator(seed); };
  // Share 0 is plain top-k.
  EXPECT_TRUE(torch::equal(SelectTopkMixed(scores, 8, 0.0, gen(1)),
                           SelectPatches(scores, 8, MaskCriterion::kStudentTopk)));
  // k = 8, share 0.25: r = 2, so patches 10..15 always, plus 2 of 0..9.
  torch::Tensor idx = SelectTopkMixed(scores, 8, 0.25, gen(1));
  ASSERT_EQ(idx.sizes(), (std::vector<int64_t>{256, 8}));
  EXPECT_TRUE((idx.diff(1, 1) > 0).all().item<bool>()) << "sorted, hence unique";
  EXPECT_TRUE(torch::equal(idx.narrow(1, 2, 6), torch::arange(10, 16).repeat({256, 1})));
  torch::Tensor random_part = idx.narrow(1, 0, 2);
  EXPECT_TRUE((random_part < 10).all().item<bool>());
  // Every one of 0..9 is drawn sometimes (about 51 times in 256 rows each).
  torch::Tensor counts = torch::zeros({10}, torch::kInt64)
                             .scatter_add_(0, random_part.flatten(),
                                           torch::ones({random_part.numel()}, torch::kInt64));
  EXPECT_GT(counts.min().item<int64_t>(), 20);
  EXPECT_LT(counts.max().item<int64_t>(), 90);
  // Seeded: the same generator seed draws the same, another seed not.
  EXPECT_TRUE(torch::equal(idx, SelectTopkMixed(scores, 8, 0.25, gen(1))));
  EXPECT_FALSE(torch::equal(idx, SelectTopkMixed(scores, 8, 0.25, gen(2))));
}

TEST(MaskingTest, RandomPatchSubsetDrawsKInRangeAndPatchesPerRow) {
  std::set<int64_t> ks;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    torch::Tensor idx =
        RandomPatchSubset(32, 16, 0.25, at::detail::createCPUGenerator(seed), torch::kCPU);
    ASSERT_EQ(idx.size(0), 32);
    ks.insert(idx.size(1));
    EXPECT_TRUE((idx.diff(1, 1) > 0).all().item<bool>()) << "sorted, hence unique";
    EXPECT_GE(idx.min().item<int64_t>(), 0);
    EXPECT_LT(idx.max().item<int64_t>(), 16);
    if (idx.size(1) < 16) {  // Random per row: not every row the same.
      EXPECT_FALSE(torch::equal(idx, idx[0].unsqueeze(0).expand_as(idx)));
    }
  }
  // k = 4..16 (13 values), each about 3 times in 40 draws.
  EXPECT_EQ(*ks.begin(), 4);
  EXPECT_EQ(*ks.rbegin(), 16);
  EXPECT_GE(ks.size(), 9u);
  // keep_min 1 keeps everything.
  EXPECT_TRUE(
      torch::equal(RandomPatchSubset(2, 16, 1.0, at::detail::createCPUGenerator(0), torch::kCPU),
                   torch::arange(16).repeat({2, 1})));
}

TEST(MaskingTest, ResizeScoresMatchesTorchInterpolate) {
  nlohmann::json json = LoadGoldenJson();
  auto rows = [&](const char* key) { return JsonTensor(json[key]); };
  torch::Tensor resized = ResizeScores(rows("scores_4x4"), 4, 4, 6, 6);
  EXPECT_LE((resized - rows("scores_resized_6x6")).abs().max().item<double>(), 1e-9);
  torch::Tensor same = rows("scores_4x4");
  EXPECT_TRUE(ResizeScores(same, 4, 4, 4, 4).is_same(same));
}

TEST(MaskingTest, PatchifyAndCutPatchesLayout) {
  // 1 image, 2 channels, 4x4 pixels, patch 2 -> 4 patches of 2*2*2 values.
  torch::Tensor img = torch::arange(32, torch::kFloat32).reshape({1, 2, 4, 4});
  torch::Tensor p = Patchify(img, 2);
  ASSERT_EQ(p.sizes(), (torch::IntArrayRef{1, 4, 8}));
  // Patch 1 is rows 0-1, columns 2-3: channel 0 then channel 1.
  EXPECT_TRUE(torch::equal(p[0][1], torch::tensor({2.f, 3.f, 6.f, 7.f, 18.f, 19.f, 22.f, 23.f})));
  torch::Tensor cut = CutPatches(img, torch::tensor({{3, 1}}, torch::kInt64), 2);
  EXPECT_TRUE(torch::equal(cut[0][0], p[0][3]));
  EXPECT_TRUE(torch::equal(cut[0][1], p[0][1]));
}

}  // namespace
}  // namespace mkd
