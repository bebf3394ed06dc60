// The demo's committed teachers (assets/fmnist_teacher.safetensors, 16
// tokens; assets/fmnist49_teacher.safetensors, 49 tokens) are what their
// records (assets/*.json) say they are: the same bytes, and the same
// accuracy on Debian's Fashion-MNIST test set through the real
// `mkd-student eval`. scripts/demo.sh trusts both instead of retraining.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

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

class DemoTeacher : public ::testing::TestWithParam<const char*> {
 protected:
  nlohmann::json Record() {
    std::ifstream in(GetParam());
    EXPECT_TRUE(in.good()) << GetParam() << " is missing";
    return nlohmann::json::parse(in);
  }
};

INSTANTIATE_TEST_SUITE_P(Records, DemoTeacher,
                         ::testing::Values("assets/fmnist_teacher.json",
                                           "assets/fmnist49_teacher.json"));

TEST_P(DemoTeacher, TheWeightsAreTheRecordedBytes) {
  const nlohmann::json record = Record();
  const std::string sum = Capture("sha256sum " + record.at("weights").get<std::string>());
  EXPECT_EQ(sum.substr(0, 64), record.at("sha256").get<std::string>());
}

TEST_P(DemoTeacher, EvalReproducesTheRecordedAccuracy) {
  const nlohmann::json record = Record();
  const std::string line = Capture(testing::BinDir() + "/mkd-student eval --config " +
                                   record.at("config").get<std::string>() + " --checkpoint " +
                                   record.at("weights").get<std::string>());
  const nlohmann::json& eval = record.at("eval");
  // Two decimals of a percentage over 10,000 images: one image is 0.01, so
  // these are exact counts, not a tolerance.
  EXPECT_NE(line.find("top1 " + eval.at("top1").get<std::string>() + "%"), std::string::npos)
      << line;
  EXPECT_NE(line.find("top5 " + eval.at("top5").get<std::string>() + "%"), std::string::npos)
      << line;
  EXPECT_NE(line.find("on " + std::to_string(eval.at("images").get<int>()) + " images"),
            std::string::npos)
      << line;
}

}  // namespace
}  // namespace mkd
