// Losses against torch.nn.functional (cross_entropy with label smoothing and
// probability targets, kl_div batchmean), via tests/golden/losses.json.
#include "common/losses.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/golden_json.h"

namespace mkd {
namespace {

class LossesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    json_ = LoadGoldenJson();
    s_ = JsonTensor(json_["student"]);
    t_ = JsonTensor(json_["teacher"]);
    soft_ = JsonTensor(json_["soft_target"]);
    y_ = torch::tensor(json_["target"].get<std::vector<int64_t>>(), torch::kInt64);
  }

  double Want(const char* key) { return json_[key].get<double>(); }

  nlohmann::json json_;
  torch::Tensor s_, t_, soft_, y_;
};

constexpr double kTol = 1e-10;

TEST_F(LossesTest, CrossEntropy) {
  EXPECT_NEAR(CrossEntropy(s_, y_).item<double>(), Want("ce"), kTol);
  EXPECT_NEAR(CrossEntropy(s_, y_, 0.1).item<double>(), Want("ce_smooth_0.1"), kTol);
  EXPECT_NEAR(SoftTargetCrossEntropy(s_, soft_).item<double>(), Want("soft_ce"), kTol);
}

TEST_F(LossesTest, KdIsBatchmeanKlTimesTauSquared) {
  EXPECT_NEAR(KdLoss(s_, t_, 1.0).item<double>(), Want("kd_tau_1"), kTol);
  EXPECT_NEAR(KdLoss(s_, t_, 2.0).item<double>(), Want("kd_tau_2"), kTol);
  EXPECT_NEAR(HardDistillLoss(s_, t_).item<double>(), Want("hard"), kTol);
}

TEST_F(LossesTest, TotalMixesCeAndKd) {
  DistillLossTerms a = DistillLoss(s_, t_, y_, {0.5, 1.0, KdKind::kSoft});
  EXPECT_NEAR(a.total.item<double>(), Want("total_alpha_0.5_tau_1"), kTol);
  DistillLossTerms b = DistillLoss(s_, t_, y_, {0.3, 2.0, KdKind::kSoft});
  EXPECT_NEAR(b.total.item<double>(), Want("total_alpha_0.3_tau_2"), kTol);
  EXPECT_NEAR(b.ce.item<double>(), Want("ce"), kTol);
  DistillLossTerms soft = DistillLoss(s_, t_, soft_, {0.5, 1.0, KdKind::kSoft});
  EXPECT_NEAR(soft.ce.item<double>(), Want("soft_ce"), kTol);
  DistillLossTerms hard = DistillLoss(s_, t_, y_, {0.5, 1.0, KdKind::kHard});
  EXPECT_NEAR(hard.kd.item<double>(), Want("hard"), kTol);
}

TEST_F(LossesTest, NoGradientReachesTheTeacher) {
  torch::Tensor s = s_.clone().requires_grad_(true);
  torch::Tensor t = t_.clone().requires_grad_(true);
  DistillLoss(s, t, y_, {}).total.backward();
  EXPECT_TRUE(s.grad().defined());
  EXPECT_FALSE(t.grad().defined());
  EXPECT_EQ(ParseKdKind("hard").value(), KdKind::kHard);
  EXPECT_FALSE(ParseKdKind("medium").ok());
}

}  // namespace
}  // namespace mkd
