// HeartbeatLoop's policy with scripted calls: the coordinator's interval,
// refusals (stop and report once, or retry), and stopping from inside a
// call. The loop over real gRPC, against a real coordinator, is in
// tests/pool_test.cc and tests/pool_trust_test.cc (teachers and jobs).
#include "rpc/heartbeat_loop.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "absl/time/clock.h"

namespace mkd::rpc {
namespace {

// What the calls saw, shared with the loop's thread; every field under
// `mu` (not annotated: the tests read them from lambdas).
struct Script {
  Mutex mu;
  CondVar changed;
  int calls = 0;
  std::vector<absl::Status> refusals;

  // Waits (at most 10 s) until `done` holds; false if it never did.
  template <typename F>
  bool WaitFor(F done) {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    MutexLock lock(&mu);
    while (!done()) {
      if (!changed.WaitWithDeadline(&mu, give_up)) return done();
    }
    return true;
  }
  int Calls() {
    MutexLock lock(&mu);
    return calls;
  }
};

HeartbeatLoop::Options JobOptions(Script* s) {
  HeartbeatLoop::Options o;
  o.member = "job j1";
  o.coordinator = "127.0.0.1:7000";
  o.while_away = "training goes on";
  o.retry = absl::Milliseconds(1);
  o.on_refused = [s](const absl::Status& st) {
    MutexLock lock(&s->mu);
    s->refusals.push_back(st);
    s->changed.SignalAll();
  };
  return o;
}

TEST(HeartbeatLoopTest, CallsAgainAtTheIntervalTheCoordinatorAsksFor) {
  Script s;
  std::vector<absl::Duration> left;  // Each call's deadline, from its start.
  HeartbeatLoop loop(JobOptions(&s), [&](grpc::ClientContext* ctx, absl::Duration* interval) {
    MutexLock lock(&s.mu);
    left.push_back(absl::FromChrono(ctx->deadline()) - absl::Now());
    *interval = absl::Milliseconds(5);
    ++s.calls;
    s.changed.SignalAll();
    return grpc::Status::OK;
  });
  ASSERT_TRUE(s.WaitFor([&]() { return s.calls >= 4; }));
  loop.Stop();
  MutexLock lock(&s.mu);
  // Every call has a deadline (at least 2 s: a slow coordinator is waited
  // for, a dead one is not).
  for (absl::Duration d : left) {
    EXPECT_GT(d, absl::Seconds(1));
    EXPECT_LE(d, absl::Seconds(2));
  }
  EXPECT_TRUE(s.refusals.empty());
}

TEST(HeartbeatLoopTest, ARefusalStopsTheLoopAndIsReportedOnceWithItsCode) {
  Script s;
  {
    HeartbeatLoop loop(JobOptions(&s), [&](grpc::ClientContext*, absl::Duration*) {
      MutexLock lock(&s.mu);
      ++s.calls;
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "the token does not grant this job");
    });
    ASSERT_TRUE(s.WaitFor([&]() { return !s.refusals.empty(); }));
  }  // Joined: the loop ended by itself.
  MutexLock lock(&s.mu);
  EXPECT_EQ(s.calls, 1);  // Not retried: the same call would be refused the same way.
  ASSERT_EQ(s.refusals.size(), 1u);
  EXPECT_EQ(s.refusals[0].code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.refusals[0].message(),
            "coordinator 127.0.0.1:7000 refused job j1: the token does not grant this job");
}

TEST(HeartbeatLoopTest, TransientFailuresAreRetriedUntilTheCoordinatorAnswers) {
  Script s;
  HeartbeatLoop::Options o = JobOptions(&s);
  HeartbeatLoop loop(o, [&](grpc::ClientContext*, absl::Duration* interval) {
    MutexLock lock(&s.mu);
    ++s.calls;
    s.changed.SignalAll();
    if (s.calls <= 3) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused");
    *interval = absl::Hours(1);  // Answered: the next call is an hour away.
    return grpc::Status::OK;
  });
  ASSERT_TRUE(s.WaitFor([&]() { return s.calls >= 4; }));
  loop.Stop();
  MutexLock lock(&s.mu);
  EXPECT_EQ(s.calls, 4);
  EXPECT_TRUE(s.refusals.empty());
}

TEST(HeartbeatLoopTest, WithoutOnRefusedARefusalIsRetriedLikeAnyFailure) {
  Script s;
  HeartbeatLoop::Options o = JobOptions(&s);
  o.member = "mkd-teacher";
  o.on_refused = nullptr;  // A teacher: keeps serving while its token is fixed.
  HeartbeatLoop loop(o, [&](grpc::ClientContext*, absl::Duration*) {
    MutexLock lock(&s.mu);
    ++s.calls;
    s.changed.SignalAll();
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "a pool token is required");
  });
  EXPECT_TRUE(s.WaitFor([&]() { return s.calls >= 3; }));
}

TEST(HeartbeatLoopTest, StopsFromInsideItsOwnCall) {
  Script s;
  std::unique_ptr<HeartbeatLoop> loop;
  HeartbeatLoop* self = nullptr;
  {
    MutexLock lock(&s.mu);  // `self` is set before the first call reads it.
    loop = std::make_unique<HeartbeatLoop>(
        JobOptions(&s), [&](grpc::ClientContext*, absl::Duration* interval) {
          MutexLock inner(&s.mu);
          ++s.calls;
          self->Stop();  // A drained teacher stops its own heartbeats, say.
          *interval = absl::Milliseconds(1);
          s.changed.SignalAll();
          return grpc::Status::OK;
        });
    self = loop.get();
  }
  ASSERT_TRUE(s.WaitFor([&]() { return s.calls >= 1; }));
  loop.reset();  // Joins at once: the loop was already stopping.
  EXPECT_EQ(s.Calls(), 1);
}

}  // namespace
}  // namespace mkd::rpc
