// The teacher's limits (LimitsConfig) over real gRPC on loopback: streams
// per client and per job, micro-batches in flight per job, idle streams.
// Each refusal carries the right code and names its config key, is counted
// in mkd_teacher_limit_refusals_total, and leaves other clients served.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "teacher_server/server_test_util.h"
#include "teacher_server/stream_limits.h"

namespace mkd::teacher::test_util {
namespace {

TeacherServerConfig LimitsConfigWith(const std::function<void(LimitsConfig&)>& set) {
  TeacherServerConfig c = Config();
  set(c.limits);
  return c;
}

// Writes one micro-batch of `job` and expects it answered OK: the stream is
// open and bound to `job`.
void ExpectServed(Stream& stream, const std::string& job, uint64_t id) {
  ASSERT_TRUE(stream.Write(Request(job, id, MakeMicroBatch(1, 4, id))));
  auto got = stream.Read(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got.at(id).code(), 0) << got.at(id).message();
}

TEST(TeacherLimits, AClientOverItsStreamLimitIsRefusedUntilOneCloses) {
  Started s = Start(LimitsConfigWith([](LimitsConfig& l) { l.max_streams_per_client = 1; }));
  {
    Stream first(s.stub.get());
    ExpectServed(first, "a", 1);
    Stream second(s.stub.get());
    const grpc::Status refused = second.Close();
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(refused.error_message().find("limits.max_streams_per_client"), std::string::npos)
        << refused.error_message();
    EXPECT_EQ(s.server->metrics().limit_refusals("streams_per_client"), 1);
    EXPECT_TRUE(first.Close().ok());
  }
  // The slot comes back once the server is done with the first stream.
  EXPECT_TRUE(WaitUntil([&] { return s.server->service().stream_limits().open_streams() == 0; }));
  Stream third(s.stub.get());
  ExpectServed(third, "a", 2);
  EXPECT_TRUE(third.Close().ok());
}

TEST(TeacherLimits, AJobOverItsStreamLimitIsRefusedAndOtherJobsAreNot) {
  Started s = Start(LimitsConfigWith([](LimitsConfig& l) { l.max_streams_per_job = 1; }));
  Stream a1(s.stub.get());
  ExpectServed(a1, "a", 1);
  Stream a2(s.stub.get());
  ASSERT_TRUE(a2.Write(Request("a", 2, MakeMicroBatch(1, 4, 2))));
  const grpc::Status refused = a2.Close();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.error_message().find("job 'a'"), std::string::npos);
  EXPECT_NE(refused.error_message().find("limits.max_streams_per_job"), std::string::npos);
  EXPECT_EQ(s.server->metrics().limit_refusals("streams_per_job"), 1);
  Stream b(s.stub.get());
  ExpectServed(b, "b", 3);
  ExpectServed(a1, "a", 4);  // The first stream of job a is unaffected.
  EXPECT_TRUE(b.Close().ok());
  EXPECT_TRUE(a1.Close().ok());
}

TEST(TeacherLimits, AStreamCarriesOneJob) {
  Started s = Start();
  Stream stream(s.stub.get());
  ExpectServed(stream, "a", 1);
  ASSERT_TRUE(stream.Write(Request("b", 2, MakeMicroBatch(1, 4, 2))));
  auto got = stream.Read(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got.at(2).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(got.at(2).message().find("carries job 'a'"), std::string::npos) << got.at(2).message();
  ExpectServed(stream, "a", 3);
  EXPECT_TRUE(stream.Close().ok());
}

TEST(TeacherLimits, MicroBatchesOverAJobsInFlightLimitAreAnsweredResourceExhausted) {
  Started s = Start(LimitsConfigWith([](LimitsConfig& l) { l.max_in_flight_per_job = 2; }));
  s.engine->Close();
  Stream a(s.stub.get());
  MicroBatch m = MakeMicroBatch(1, 4, 5);
  ASSERT_TRUE(a.Write(Request("a", 1, m)));
  ASSERT_TRUE(s.engine->WaitRuns(1));
  ASSERT_TRUE(a.Write(Request("a", 2, m)));
  ASSERT_TRUE(a.Write(Request("a", 3, m)));  // The third in flight: over the limit.
  auto refused = a.Read(1);
  ASSERT_EQ(refused.size(), 1u);
  ASSERT_EQ(refused.count(3), 1u);
  EXPECT_EQ(refused.at(3).code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.at(3).message().find("limits.max_in_flight_per_job"), std::string::npos);
  EXPECT_EQ(s.server->metrics().limit_refusals("in_flight_per_job"), 1);
  EXPECT_EQ(s.server->service().stream_limits().in_flight("a"), 2);
  s.engine->Open();
  auto served = a.Read(2);
  ASSERT_EQ(served.size(), 2u);
  for (auto& [id, r] : served) EXPECT_EQ(r.code(), 0) << id << ": " << r.message();
  // Answered work frees its place: the same id again is accepted now.
  ExpectServed(a, "a", 3);
  EXPECT_EQ(s.server->service().stream_limits().in_flight("a"), 0);
  EXPECT_TRUE(a.Close().ok());
}

// The idle sweep on the test's clock: the test moves it and sweeps, so
// what ends and when does not depend on a thread or on real time.
struct TestClock {
  std::atomic<int64_t> ns{absl::ToUnixNanos(absl::Now())};
  absl::Time Now() const { return absl::FromUnixNanos(ns.load()); }
  void Advance(absl::Duration d) { ns += absl::ToInt64Nanoseconds(d); }
};

TEST(TeacherLimits, AnIdleStreamIsEndedAndABusyOneIsNot) {
  auto clock = std::make_shared<TestClock>();
  Started s = Start(LimitsConfigWith([](LimitsConfig& l) { l.idle_stream_timeout_s = 1; }),
                    [clock] { return clock->Now(); });
  TeacherServiceImpl& service = s.server->service();
  // Busy: its one micro-batch is held in the engine for longer than the
  // timeout, and the stream must survive a sweep.
  s.engine->Close();
  Stream busy(s.stub.get());
  ASSERT_TRUE(busy.Write(Request("busy", 1, MakeMicroBatch(1, 4, 1))));
  ASSERT_TRUE(s.engine->WaitRuns(1));
  clock->Advance(absl::Seconds(5));
  service.SweepIdleStreams();
  s.engine->Open();
  auto got = busy.Read(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got.at(1).code(), 0) << got.at(1).message();
  EXPECT_EQ(s.server->metrics().limit_refusals("idle_stream"), 0);
  EXPECT_TRUE(busy.Close().ok());
  // The answer's write may still be finishing on the server, and a stream
  // writing is not idle: the sweeps repeat (bounded) so each check sees the
  // stream once it is quiet.
  const auto sweep_until = [&](const std::function<bool()>& done) {
    for (int i = 0; i < 500 && !done(); ++i) {
      service.SweepIdleStreams();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  };
  const auto ended_by_sweep = [&] {
    return s.server->metrics().limit_refusals("idle_stream") == 1;
  };
  // Within the timeout a stream with nothing in flight is left alone,
  // however often the sweep runs.
  Stream idle(s.stub.get());
  ExpectServed(idle, "idle", 2);
  clock->Advance(absl::Milliseconds(900));
  for (int i = 0; i < 50; ++i) {
    service.SweepIdleStreams();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(s.server->metrics().limit_refusals("idle_stream"), 0);
  // Past it, the sweep ends it: nothing in flight and nothing sent, and the
  // client never half-closes (the stream's own 60 s deadline bounds the
  // wait, and its message would differ).
  clock->Advance(absl::Milliseconds(200));
  EXPECT_TRUE(sweep_until(ended_by_sweep));
  const grpc::Status ended = idle.AwaitEnd();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_NE(ended.error_message().find("limits.idle_stream_timeout_s"), std::string::npos)
      << ended.error_message();
  EXPECT_EQ(s.server->metrics().limit_refusals("idle_stream"), 1);
  Stream again(s.stub.get());  // The client reconnects when it has work.
  ExpectServed(again, "idle", 3);
  EXPECT_TRUE(again.Close().ok());
}

TEST(StreamLimits, PeerHostDropsThePort) {
  EXPECT_EQ(PeerHost("ipv4:10.0.0.7:53122"), "ipv4:10.0.0.7");
  EXPECT_EQ(PeerHost("ipv6:[::1]:80"), "ipv6:[::1]");
  EXPECT_EQ(PeerHost("unix:/tmp/s"), "unix:/tmp/s");
}

}  // namespace
}  // namespace mkd::teacher::test_util
