// The retry policy and the status conversion.
#include "rpc/retry.h"

#include <gtest/gtest.h>

#include "rpc/status.h"

namespace mkd::rpc {
namespace {

TEST(RetryTest, BackoffDoublesUpToItsCapAndStartsOverOnReset) {
  Backoff b(absl::Milliseconds(100), absl::Seconds(1));
  EXPECT_EQ(b.Next(), absl::Milliseconds(100));
  EXPECT_EQ(b.Next(), absl::Milliseconds(200));
  EXPECT_EQ(b.Next(), absl::Milliseconds(400));
  EXPECT_EQ(b.Next(), absl::Milliseconds(800));
  EXPECT_EQ(b.Next(), absl::Seconds(1));
  EXPECT_EQ(b.Next(), absl::Seconds(1));
  b.Reset();
  EXPECT_EQ(b.Next(), absl::Milliseconds(100));
}

TEST(RetryTest, TransientCodesAndRefusalsAreApart) {
  for (auto code : {absl::StatusCode::kUnavailable, absl::StatusCode::kResourceExhausted,
                    absl::StatusCode::kDeadlineExceeded}) {
    EXPECT_TRUE(IsTransient(code)) << code;
    EXPECT_FALSE(IsRefusal(code)) << code;
  }
  for (auto code : {absl::StatusCode::kInvalidArgument, absl::StatusCode::kUnauthenticated,
                    absl::StatusCode::kPermissionDenied}) {
    EXPECT_TRUE(IsRefusal(code)) << code;
    EXPECT_FALSE(IsTransient(code)) << code;
  }
  for (auto code : {absl::StatusCode::kOk, absl::StatusCode::kInternal,
                    absl::StatusCode::kFailedPrecondition, absl::StatusCode::kCancelled}) {
    EXPECT_FALSE(IsTransient(code)) << code;
    EXPECT_FALSE(IsRefusal(code)) << code;
  }
}

TEST(StatusTest, CodesAndMessagesSurviveTheTripBothWays) {
  for (int c = 0; c <= 16; ++c) {
    const absl::Status a(static_cast<absl::StatusCode>(c), c == 0 ? "" : "why");
    const grpc::Status g = ToGrpcStatus(a);
    EXPECT_EQ(static_cast<int>(g.error_code()), c);
    EXPECT_EQ(FromGrpcStatus(g), a);
    EXPECT_EQ(StatusFromCode(c, c == 0 ? "" : "why"), a);
  }
  const absl::Status with = FromGrpcStatus(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"), "coordinator c:1");
  EXPECT_EQ(with.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(with.message(), "coordinator c:1: connection refused");
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK, "context").ok());
}

}  // namespace
}  // namespace mkd::rpc
