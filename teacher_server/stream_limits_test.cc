#include "teacher_server/stream_limits.h"

#include <gtest/gtest.h>

namespace mkd::teacher {
namespace {

TEST(StreamLimits, CountsPerClientAndPerJobAndFreesOnClose) {
  LimitsConfig config;
  config.max_streams_per_client = 2;
  config.max_streams_per_job = 1;
  TeacherMetrics metrics;
  StreamLimits limits(config, &metrics);
  EXPECT_TRUE(limits.OpenStream("ipv4:10.0.0.1").ok());
  EXPECT_TRUE(limits.OpenStream("ipv4:10.0.0.1").ok());
  const absl::Status third = limits.OpenStream("ipv4:10.0.0.1");
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.message().find("(2: the teacher's limits.max_streams_per_client)"),
            std::string::npos)
      << third;
  EXPECT_TRUE(limits.OpenStream("ipv4:10.0.0.2").ok());  // Another client.
  EXPECT_EQ(limits.open_streams(), 3);

  EXPECT_TRUE(limits.BindJob("a").ok());
  EXPECT_EQ(limits.BindJob("a").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(limits.BindJob("b").ok());
  limits.CloseStream("ipv4:10.0.0.1", "a");
  EXPECT_TRUE(limits.OpenStream("ipv4:10.0.0.1").ok());
  EXPECT_TRUE(limits.BindJob("a").ok());
  EXPECT_EQ(metrics.limit_refusals("streams_per_client"), 1);
  EXPECT_EQ(metrics.limit_refusals("streams_per_job"), 1);
}

TEST(StreamLimits, InFlightPerJobAndZeroMeansNoLimit) {
  LimitsConfig config;
  config.max_in_flight_per_job = 2;
  config.max_streams_per_client = 0;
  StreamLimits limits(config, nullptr);
  EXPECT_TRUE(limits.Admit("a").ok());
  EXPECT_TRUE(limits.Admit("a").ok());
  EXPECT_EQ(limits.Admit("a").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(limits.Admit("b").ok());
  limits.Release("a");
  EXPECT_EQ(limits.in_flight("a"), 1);
  EXPECT_TRUE(limits.Admit("a").ok());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limits.OpenStream("c").ok());
}

}  // namespace
}  // namespace mkd::teacher
