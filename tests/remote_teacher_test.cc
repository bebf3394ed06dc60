// The student's remote teacher against a real TeacherServer on loopback
// (in this process, so the test can hold the server's forward passes at a
// gate): a busy server's RESOURCE_EXHAUSTED answers are retried under the
// same id until every micro-batch is answered, and retries stop at
// max_attempts with the server's reason.
#include "student_worker/remote_teacher.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>
#include <vector>

#include "teacher_server/server_test_util.h"

namespace mkd::student {
namespace {

namespace tu = teacher::test_util;

// Waits (bounded) until the server has answered `n` micro-batches with `code`.
bool WaitForAnswers(teacher::TeacherServer& server, absl::StatusCode code, int64_t n) {
  for (int i = 0; i < 3000 && server.metrics().requests(code) < n; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return server.metrics().requests(code) >= n;
}

RemoteTeacherOptions Options(int port, int max_attempts) {
  RemoteTeacherOptions o;
  o.address = "127.0.0.1:" + std::to_string(port);
  o.wire_dtype = "fp32";
  o.job_id = "retry-test";
  o.max_attempts = max_attempts;
  o.timeout = absl::Seconds(30);
  o.reconnect_timeout = absl::Seconds(30);
  return o;
}

TEST(RemoteTeacher, BusyServerIsRetriedUntilEveryMicroBatchIsAnswered) {
  teacher::TeacherServerConfig config = tu::Config();
  config.batcher.max_queued = 1;
  tu::Started s = tu::Start(config);
  auto remote = MakeRemoteTeacher(Options(s.server->port(), 20));
  ASSERT_TRUE(remote.ok()) << remote.status();

  s.engine->Close();
  std::vector<tu::MicroBatch> batches;
  std::vector<PendingLogits> pending;
  for (uint64_t i = 0; i < 4; ++i) {
    batches.push_back(tu::MakeMicroBatch(2, 8, 20 + i));
    pending.push_back((*remote)->SubmitLogits(batches.back().images, batches.back().idx));
    // The first is held at the gate, so the queue (one slot) fills up.
    if (i == 0) ASSERT_TRUE(s.engine->WaitRuns(1));
  }
  // The server turned work away at least twice (a retry included) ...
  ASSERT_TRUE(WaitForAnswers(*s.server, absl::StatusCode::kResourceExhausted, 3));
  s.engine->Open();
  // ... and yet every micro-batch gets its own logits, computed once.
  for (size_t i = 0; i < pending.size(); ++i) {
    auto logits = AwaitLogits(pending[i], absl::Seconds(60));
    ASSERT_TRUE(logits.ok()) << i << ": " << logits.status();
    EXPECT_TRUE(torch::allclose(*logits, tu::Expected(batches[i]), 1e-5, 1e-5)) << i;
  }
  EXPECT_EQ(s.server->metrics().requests(absl::StatusCode::kOk), 4);
}

TEST(RemoteTeacher, RetriesStopAtMaxAttemptsWithTheServersReason) {
  teacher::TeacherServerConfig config = tu::Config();
  config.batcher.max_queued = 1;
  tu::Started s = tu::Start(config);
  auto remote = MakeRemoteTeacher(Options(s.server->port(), 2));
  ASSERT_TRUE(remote.ok()) << remote.status();

  s.engine->Close();
  tu::MicroBatch m = tu::MakeMicroBatch(2, 8, 30);
  PendingLogits held = (*remote)->SubmitLogits(m.images, m.idx);
  ASSERT_TRUE(s.engine->WaitRuns(1));
  PendingLogits queued = (*remote)->SubmitLogits(m.images, m.idx);
  for (int i = 0; i < 3000 && s.server->metrics().queued() < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(s.server->metrics().queued(), 1);
  PendingLogits refused = (*remote)->SubmitLogits(m.images, m.idx);
  auto r = AwaitLogits(refused, absl::Seconds(60));  // Two sends, both refused.
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("queue is full"), std::string::npos) << r.status();
  EXPECT_EQ(s.server->metrics().requests(absl::StatusCode::kResourceExhausted), 2);
  s.engine->Open();
  EXPECT_TRUE(AwaitLogits(held, absl::Seconds(60)).ok());
  EXPECT_TRUE(AwaitLogits(queued, absl::Seconds(60)).ok());
}

}  // namespace
}  // namespace mkd::student
