// The fp16 loss scaler's bookkeeping, on the CPU path (the CUDA path uses
// one fused kernel for the same work and is run by tests/cuda_test.cc).
#include "student_worker/grad_scaler.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace mkd::student {
namespace {

torch::Tensor ParamWithGrad(std::vector<float> grad) {
  torch::Tensor p = torch::zeros({static_cast<int64_t>(grad.size())}).requires_grad_(true);
  p.mutable_grad() = torch::tensor(grad);
  return p;
}

TEST(GradScalerTest, DisabledIsTheIdentity) {
  GradScaler s(false, {});
  torch::Tensor loss = torch::tensor(2.0f);
  EXPECT_TRUE(torch::equal(s.Scale(loss), loss));
  torch::Tensor p = ParamWithGrad({1, std::numeric_limits<float>::infinity()});
  EXPECT_TRUE(s.Unscale({p})) << "disabled: no checking at all";
  EXPECT_EQ(s.scale(), 1.0);
}

TEST(GradScalerTest, UnscalesFindsOverflowBacksOffAndGrows) {
  GradScalerOptions o;
  o.init_scale = 8;
  o.growth_interval = 2;
  GradScaler s(true, o);
  EXPECT_FLOAT_EQ(s.Scale(torch::tensor(3.0f)).item<float>(), 24.0f);

  torch::Tensor p = ParamWithGrad({8, -16});
  EXPECT_TRUE(s.Unscale({p}));
  EXPECT_TRUE(torch::equal(p.grad(), torch::tensor({1.0f, -2.0f})));

  torch::Tensor bad = ParamWithGrad({1, std::numeric_limits<float>::quiet_NaN()});
  EXPECT_FALSE(s.Unscale({p, bad}));
  s.Update(true);
  EXPECT_EQ(s.scale(), 4);  // Backed off.
  s.Update(false);
  EXPECT_EQ(s.scale(), 4);
  s.Update(false);
  EXPECT_EQ(s.scale(), 8);  // Grown after growth_interval clean steps.
}

TEST(GradScalerTest, StateRoundTripsThroughACheckpoint) {
  GradScalerOptions o;
  o.init_scale = 1024;
  GradScaler a(true, o);
  a.Update(true);
  a.Update(false);
  SafetensorsFile f;
  a.Save(&f);
  GradScaler b(true, o);
  ASSERT_TRUE(b.Load(f).ok());
  EXPECT_EQ(b.scale(), 512);
  // A state written without scaling (fp32/bf16 run) keeps the fresh scale.
  GradScaler c(true, o);
  ASSERT_TRUE(c.Load(SafetensorsFile()).ok());
  EXPECT_EQ(c.scale(), 1024);
  f.metadata["amp.scale"] = "-3";
  auto st = GradScaler(true, o).Load(f);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("amp.scale"), std::string::npos);
}

}  // namespace
}  // namespace mkd::student
