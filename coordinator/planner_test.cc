#include "coordinator/planner.h"

#include <gtest/gtest.h>

namespace mkd::coordinator {
namespace {

StepModel Model(double f, double g, double c, double latency) {
  StepModel m;
  m.forward.per_image = f;
  m.backward.per_image = g;
  m.service.per_image = c;
  m.latency = latency;
  return m;
}

TEST(Planner, WithAnInstantTeacherTheStepIsTheStudentsWork) {
  StepPrediction p = PredictStep(Model(1, 2, 0, 0), 8, 4);
  EXPECT_DOUBLE_EQ(p.step_s, 24);
  EXPECT_DOUBLE_EQ(p.bubble, 0);
}

TEST(Planner, SimulatesTheTrainersSchedule) {
  // B = 8, forward 1 and backward 2 per image, teacher 0.5 per image, a
  // round trip of 4 beyond the service.
  const StepModel model = Model(1, 2, 0.5, 4);
  // m = 1: forward ends at 8, the answer comes at 8 + 2 + 4 + 2 = 16, the
  // backward takes 16: 32, of which 8 waiting.
  StepPrediction one = PredictStep(model, 8, 1);
  EXPECT_DOUBLE_EQ(one.step_s, 32);
  EXPECT_DOUBLE_EQ(one.bubble, 8.0 / 32);
  // m = 2: forwards end at 4 and 8; answers at 10 and 14; backwards
  // 10-18 and 18-26.
  EXPECT_DOUBLE_EQ(PredictStep(model, 8, 2).step_s, 26);
  // Uneven split: 3 micro-batches of 3, 3, 2 rows.
  EXPECT_GT(PredictStep(model, 8, 3).step_s, 0);
}

TEST(Planner, FixedCostsBoundTheBestM) {
  StepModel model = Model(1, 2, 1, 10);
  model.forward.fixed = 2;  // Per micro-batch: small ones cost more per image.
  model.backward.fixed = 2;
  const Plan best = BestPlan(model, 64, 16);
  EXPECT_GT(best.m, 1);
  EXPECT_LT(best.m, 16);
  for (int m = 1; m <= 16; ++m) {
    EXPECT_LE(best.prediction.step_s, PredictStep(model, 64, m).step_s * 1.0101) << m;
  }
  // Without a teacher to hide, one micro-batch is best.
  EXPECT_EQ(BestPlan(Model(1, 2, 0, 0), 64, 16).m, 1);
  EXPECT_EQ(BestPlan(model, 3, 16).m <= 3, true);  // Never more micro-batches than images.
}

TEST(Planner, OnASharedDevicePipeliningHidesNoTeacherCompute) {
  // B = 8, forward 1, backward 2, teacher 1 per image, no latency: one
  // device runs all of it, 8 + 8 + 16 = 32, whatever m.
  StepModel shared = Model(1, 2, 1, 0);
  shared.shared_device = true;
  EXPECT_DOUBLE_EQ(PredictStep(shared, 8, 1).step_s, 32);
  EXPECT_DOUBLE_EQ(PredictStep(shared, 8, 4).step_s, 32);
  // The same costs on separate hardware: the teacher hides behind the
  // student from m = 2 on (forwards end at 4 and 8, answers at 8 and 12,
  // backwards 8-16 and 16-24).
  StepModel apart = shared;
  apart.shared_device = false;
  EXPECT_DOUBLE_EQ(PredictStep(apart, 8, 2).step_s, 24);
  // With fixed costs per micro-batch, splitting only costs on one device;
  // apart, it pays.
  shared.forward.fixed = apart.forward.fixed = 0.5;
  shared.backward.fixed = apart.backward.fixed = 0.5;
  EXPECT_EQ(BestPlan(shared, 64, 16).m, 1);
  EXPECT_GT(BestPlan(apart, 64, 16).m, 1);
  // Latency still waits: the request and the answer each travel half the
  // round trip (forward 8.5, there 2, service 8, back 2, backward 16.5).
  shared.latency = 4;
  EXPECT_DOUBLE_EQ(PredictStep(shared, 8, 1).step_s, 8.5 + 2 + 8 + 2 + 16.5);
}

TEST(Planner, FitRecoversTheModelFromSamplesAtSeveralSizes) {
  StepModel truth = Model(0.01, 0.02, 0.005, 0.003);
  truth.forward.fixed = 0.004;
  truth.backward.fixed = 0.006;
  truth.service.fixed = 0.001;
  std::vector<TimingSample> samples;
  for (int m : {1, 2, 4, 8}) {
    const double b = 64.0 / m;
    samples.push_back({m, b, truth.forward.At(b), truth.backward.At(b),
                       truth.service.At(b) + truth.latency, truth.service.At(b)});
  }
  const StepModel fit = FitStepModel(samples);
  EXPECT_NEAR(fit.forward.fixed, 0.004, 1e-9);
  EXPECT_NEAR(fit.forward.per_image, 0.01, 1e-9);
  EXPECT_NEAR(fit.backward.fixed, 0.006, 1e-9);
  EXPECT_NEAR(fit.service.per_image, 0.005, 1e-9);
  EXPECT_NEAR(fit.latency, 0.003, 1e-9);
  // One size cannot separate fixed from per-image cost: all per image.
  const StepModel one = FitStepModel({samples[0]});
  EXPECT_EQ(one.forward.fixed, 0);
  EXPECT_NEAR(one.forward.per_image * 64, truth.forward.At(64), 1e-9);
}

TEST(Planner, ExploresOneTwoFourEightWithinTheLimits) {
  EXPECT_EQ(ExploreCandidates(64, 16), (std::vector<int>{1, 2, 4, 8}));
  EXPECT_EQ(ExploreCandidates(6, 16), (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(ExploreCandidates(64, 3), (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace mkd::coordinator
