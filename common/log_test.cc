#include "common/log.h"

#include <gtest/gtest.h>

#include <regex>
#include <string>

namespace mkd {
namespace {

TEST(LogTest, ALineCarriesLevelTimeComponentAndPlace) {
  InitLogging("mkd-logtest");
  testing::internal::CaptureStderr();
  MKD_LOG(WARNING) << "queue at " << 42 << "%";
  const std::string out = testing::internal::GetCapturedStderr();
  const std::regex line(
      R"(W \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} mkd-logtest log_test\.cc:\d+\] queue at 42%\n)");
  EXPECT_TRUE(std::regex_match(out, line)) << out;
}

TEST(LogTest, EachLevelHasItsLetter) {
  InitLogging("mkd-logtest");
  testing::internal::CaptureStderr();
  MKD_LOG(INFO) << "a";
  MKD_LOG(ERROR) << "b";
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(^I \S+ \S+ mkd-logtest \S+\] a\n)"))) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(\nE \S+ \S+ mkd-logtest \S+\] b\n$)"))) << out;
}

}  // namespace
}  // namespace mkd
