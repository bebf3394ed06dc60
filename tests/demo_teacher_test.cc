// The demo's committed teacher (assets/fmnist_teacher.safetensors) is what
// its record (assets/fmnist_teacher.json) says it is: the same bytes, and
// the same accuracy on Debian's Fashion-MNIST test set through the real
// `mkd-student eval`. scripts/demo.sh trusts both instead of retraining.
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/process_util.h"

namespace mkd {
namespace {

std::string Tmp(const std::string& name) { return ::testing::TempDir() + "/demo_teacher_" + name; }

// Runs a shell command; its stdout, or a failure naming the command.
std::string Capture(const std::string& cmd) {
  const std::string out = Tmp("out.txt");
  const int raw = std::system((cmd + " >" + out + " 2>&1").c_str());
  EXPECT_TRUE(WIFEXITED(raw) && WEXITSTATUS(raw) == 0) << cmd << "\n" << testing::SlurpFile(out);
  return testing::SlurpFile(out);
}

nlohmann::json Record() {
  std::ifstream in("assets/fmnist_teacher.json");
  EXPECT_TRUE(in.good()) << "assets/fmnist_teacher.json is missing";
  return nlohmann::json::parse(in);
}

TEST(DemoTeacher, TheWeightsAreTheRecordedBytes) {
  const nlohmann::json record = Record();
  const std::string sum = Capture("sha256sum " + record.at("weights").get<std::string>());
  EXPECT_EQ(sum.substr(0, 64), record.at("sha256").get<std::string>());
}

TEST(DemoTeacher, EvalReproducesTheRecordedAccuracy) {
  const nlohmann::json record = Record();
  const std::string line =
      Capture(testing::BinDir() + "/mkd-student eval --config " + record.at("config").get<std::string>() +
              " --checkpoint " + record.at("weights").get<std::string>());
  const nlohmann::json& eval = record.at("eval");
  // Two decimals of a percentage over 10,000 images: one image is 0.01, so
  // these are exact counts, not a tolerance.
  EXPECT_NE(line.find("top1 " + eval.at("top1").get<std::string>() + "%"), std::string::npos) << line;
  EXPECT_NE(line.find("top5 " + eval.at("top5").get<std::string>() + "%"), std::string::npos) << line;
  EXPECT_NE(line.find("on " + std::to_string(eval.at("images").get<int>()) + " images"), std::string::npos)
      << line;
}

}  // namespace
}  // namespace mkd
