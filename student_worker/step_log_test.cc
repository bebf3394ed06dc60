#include "student_worker/step_log.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace mkd::student {
namespace {

namespace fs = std::filesystem;

std::vector<nlohmann::json> ReadLines(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// An empty directory under the test's temp dir.
std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

StepLog::Progress At(int64_t step) {
  StepLog::Progress p;
  p.epoch = 1;
  p.epochs = 2;
  p.step = step;
  p.total_steps = 10;
  p.flops_spent = 3e9;
  p.flops_full = 5e9;
  return p;
}

StepResult DistillStep() {
  StepResult r;
  r.loss = 1.5;
  r.kept_patches = 8;
  r.timings.micro_batches = 2;
  r.timings.step_s = 0.5;
  r.wait_s = 0.1;
  StageSeconds mb;
  mb.Set(Stage::kStudentForward, 0.2);
  r.stages = {mb, mb};
  return r;
}

TEST(StepLogTest, AStepIsOneLogLineAndOneJsonLine) {
  const std::string dir = FreshDir("step_log_one");
  {
    StepLog log("rank 0/2: ", 2);
    ASSERT_TRUE(log.OpenJsonl(dir, /*resume=*/false, 0).ok());
    testing::internal::CaptureStderr();
    log.Step(At(3), DistillStep(), 250.0, 75.0, /*distill=*/true, std::nullopt);
    const std::string said = testing::internal::GetCapturedStderr();
    EXPECT_NE(said.find("] rank 0/2: epoch 1/2 step 3/10 loss 1.5000"), std::string::npos) << said;
    EXPECT_NE(said.find(" k 8 teacher GFLOPs 3.0 (saved 2.0) m 2 step 0.500s bubble 20%"),
              std::string::npos)
        << said;
    EXPECT_NE(said.find(" eta 1m15s\n"), std::string::npos) << said;
    log.Eval(At(3), EvalResult{0.5, 0.9, 0.7, 64});
  }
  const std::vector<nlohmann::json> lines = ReadLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["type"], "train");
  EXPECT_EQ(lines[0]["kept_patches"], 8);
  EXPECT_EQ(lines[0]["ranks"], 2);
  EXPECT_DOUBLE_EQ(lines[0]["bubble"].get<double>(), 0.2);
  EXPECT_DOUBLE_EQ(lines[0]["stages"]["student_forward"].get<double>(), 0.2);
  EXPECT_EQ(lines[1]["type"], "eval");
  EXPECT_EQ(lines[1]["images"], 64);
}

TEST(StepLogTest, TrainModeSaysNothingOfTeachers) {
  const std::string dir = FreshDir("step_log_train");
  StepLog log("", 1);
  ASSERT_TRUE(log.OpenJsonl(dir, false, 0).ok());
  testing::internal::CaptureStderr();
  log.Step(At(1), StepResult{}, 10.0, 1.0, /*distill=*/false, 65536.0);
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_EQ(said.find("teacher"), std::string::npos) << said;
  EXPECT_NE(said.find(" scale 65536"), std::string::npos) << said;
  const std::vector<nlohmann::json> lines = ReadLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_FALSE(lines[0].contains("bubble"));
  EXPECT_FALSE(lines[0].contains("ranks"));
}

// A run that died after its last checkpoint (step 2) logged step 3; its
// resumed run logs step 3 again, and the file holds it once.
TEST(StepLogTest, ResumeDropsTheStepsAfterTheCheckpoint) {
  const std::string dir = FreshDir("step_log_resume");
  {
    StepLog log("", 1);
    ASSERT_TRUE(log.OpenJsonl(dir, false, 0).ok());
    for (int64_t s = 1; s <= 3; ++s) log.Step(At(s), StepResult{}, 1, 1, false, std::nullopt);
  }
  {
    StepLog log("", 1);
    ASSERT_TRUE(log.OpenJsonl(dir, /*resume=*/true, /*resumed_step=*/2).ok());
    log.Step(At(3), StepResult{}, 1, 1, false, std::nullopt);
  }
  const std::vector<nlohmann::json> lines = ReadLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(lines[i]["step"], i + 1);
}

TEST(StepLogTest, AnUnwritableDirectoryIsAnError) {
  StepLog log("", 1);
  absl::Status st = log.OpenJsonl("/nonexistent/dir", false, 0);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_NE(st.message().find("/nonexistent/dir"), std::string::npos) << st;
}

}  // namespace
}  // namespace mkd::student
