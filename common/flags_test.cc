#include "common/flags.h"

#include <gtest/gtest.h>

namespace mkd {
namespace {

const std::vector<FlagSpec> kSpecs = {{"model", true, "model"},
                                      {"threads", true, "threads"},
                                      {"verbose", false, "chatty"},
                                      {"set", true, "override", /*repeated=*/true}};

TEST(FlagsTest, ParsesValuesBooleansAndPositionals) {
  auto f = ParseFlags({"predict", "--model", "deit", "--threads=4", "--verbose"}, kSpecs);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->positional(), std::vector<std::string>{"predict"});
  EXPECT_EQ(*f->Get("model"), "deit");
  EXPECT_EQ(*f->GetInt("threads", 1), 4);
  EXPECT_TRUE(f->Has("verbose"));
  EXPECT_EQ(*f->GetInt("absent", 7), 7);
  EXPECT_EQ(f->Required("absent").status().message(), "missing required flag --absent");
}

TEST(FlagsTest, RepeatedFlagsKeepEveryValue) {
  auto f = ParseFlags({"--set", "a=1", "--set=b=2"}, kSpecs);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->GetAll("set"), (std::vector<std::string>{"a=1", "b=2"}));
  EXPECT_TRUE(f->GetAll("model").empty());
}

TEST(FlagsTest, ErrorsNameTheFlag) {
  EXPECT_EQ(ParseFlags({"--modle", "x"}, kSpecs).status().message(), "unknown flag --modle");
  EXPECT_EQ(ParseFlags({"--model"}, kSpecs).status().message(), "flag --model needs a value");
  EXPECT_EQ(ParseFlags({"--model", "--verbose"}, kSpecs).status().message(),
            "flag --model needs a value");
  EXPECT_EQ(ParseFlags({"--model", "a", "--model", "b"}, kSpecs).status().message(),
            "flag --model given twice");
  EXPECT_EQ(ParseFlags({"--verbose=yes"}, kSpecs).status().message(),
            "flag --verbose takes no value");
  auto f = ParseFlags({"--threads", "four"}, kSpecs);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->GetInt("threads", 1).status().message(),
            "flag --threads expects an integer, got 'four'");
}

}  // namespace
}  // namespace mkd
