// The student's remote teacher against a real TeacherServer on loopback
// (in this process, so the test can hold the server's forward passes at a
// gate): a busy server's RESOURCE_EXHAUSTED answers are retried under the
// same id until every micro-batch is answered, and retries stop at
// max_attempts with the server's reason.
#include "teacher_client/remote_teacher.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <vector>

#include "rpc/job_token.h"
#include "teacher_server/server_test_util.h"

namespace mkd::client {
namespace {

namespace tu = teacher::test_util;

// A server whose queue holds one micro-batch, its forward passes held at
// the gate, and a client that sends each micro-batch at most
// `max_attempts` times.
struct OneSlot {
  tu::Started s;
  std::unique_ptr<Teacher> remote;

  explicit OneSlot(int max_attempts) : s(StartServer()) {
    RemoteTeacherOptions o;
    o.tls.insecure = true;
    o.address = "127.0.0.1:" + std::to_string(s.server->port());
    o.wire_dtype = DType::kF32;
    o.job_id = "retry-test";
    o.max_attempts = max_attempts;
    o.timeout = absl::Seconds(30);
    o.reconnect_timeout = absl::Seconds(30);
    auto r = MakeRemoteTeacher(o);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) remote = std::move(*r);
    s.engine->Close();
  }
  static tu::Started StartServer() {
    teacher::TeacherServerConfig config = tu::Config();
    config.batcher.max_queued = 1;
    return tu::Start(config);
  }
  int64_t answered(absl::StatusCode code) { return s.server->metrics().requests(code); }
};

TEST(RemoteTeacher, BusyServerIsRetriedUntilEveryMicroBatchIsAnswered) {
  OneSlot t(/*max_attempts=*/20);
  ASSERT_NE(t.remote, nullptr);
  std::vector<tu::MicroBatch> batches;
  std::vector<PendingLogits> pending;
  for (uint64_t i = 0; i < 4; ++i) {
    batches.push_back(tu::MakeMicroBatch(2, 8, 20 + i));
    pending.push_back(t.remote->SubmitLogits(batches.back().images, batches.back().idx));
    // The first is held at the gate, so the queue (one slot) fills up.
    if (i == 0) ASSERT_TRUE(t.s.engine->WaitRuns(1));
  }
  // The server turned work away at least three times (a retry included) ...
  ASSERT_TRUE(tu::WaitUntil([&] { return t.answered(absl::StatusCode::kResourceExhausted) >= 3; }));
  t.s.engine->Open();
  // ... and yet every micro-batch gets its own logits, computed once.
  for (size_t i = 0; i < pending.size(); ++i) {
    auto logits = AwaitLogits(pending[i], absl::Seconds(60));
    ASSERT_TRUE(logits.ok()) << i << ": " << logits.status();
    EXPECT_TRUE(torch::allclose(*logits, tu::Expected(batches[i]), 1e-5, 1e-5)) << i;
  }
  EXPECT_EQ(t.answered(absl::StatusCode::kOk), 4);
}

TEST(RemoteTeacher, RetriesStopAtMaxAttemptsWithTheServersReason) {
  OneSlot t(/*max_attempts=*/2);
  ASSERT_NE(t.remote, nullptr);
  tu::MicroBatch m = tu::MakeMicroBatch(2, 8, 30);
  PendingLogits held = t.remote->SubmitLogits(m.images, m.idx);
  ASSERT_TRUE(t.s.engine->WaitRuns(1));
  PendingLogits queued = t.remote->SubmitLogits(m.images, m.idx);
  ASSERT_TRUE(tu::WaitUntil([&] { return t.s.server->metrics().queued() == 1; }));
  PendingLogits refused = t.remote->SubmitLogits(m.images, m.idx);
  auto r = AwaitLogits(refused, absl::Seconds(60));  // Two sends, both refused.
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("queue is full"), std::string::npos) << r.status();
  EXPECT_EQ(t.answered(absl::StatusCode::kResourceExhausted), 2);
  t.s.engine->Open();
  EXPECT_TRUE(AwaitLogits(held, absl::Seconds(60)).ok());
  EXPECT_TRUE(AwaitLogits(queued, absl::Seconds(60)).ok());
}

TEST(RemoteTeacher, AMicroBatchOverTheTeachersLimitIsRefusedBeforeItIsSent) {
  teacher::TeacherServerConfig config = tu::Config();
  config.max_message_bytes = 4096;  // ModelInfo advertises it as max_request_bytes.
  tu::Started s = tu::Start(config);
  RemoteTeacherOptions o;
  o.tls.insecure = true;
  o.address = "127.0.0.1:" + std::to_string(s.server->port());
  o.wire_dtype = DType::kF32;
  auto remote = MakeRemoteTeacher(o);
  ASSERT_TRUE(remote.ok()) << remote.status();
  // 8 images x 12 kept 4x4x3 patches in fp32: 18 KiB of payload.
  tu::MicroBatch big = tu::MakeMicroBatch(8, 12, 40);
  auto r = AwaitLogits((*remote)->SubmitLogits(big.images, big.idx), absl::Seconds(30));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("max_request_bytes (4096)"), std::string::npos) << r.status();
  // One that fits goes through.
  tu::MicroBatch small = tu::MakeMicroBatch(1, 4, 41);
  EXPECT_TRUE(
      AwaitLogits((*remote)->SubmitLogits(small.images, small.idx), absl::Seconds(30)).ok());
  EXPECT_EQ(s.server->metrics().requests(absl::StatusCode::kOk), 1) << "the big one never left";
}

// A teacher that requires job tokens (auth.job_secret_file): the client
// with its job's token is served; one with another job's token runs out of
// sends within seconds and reports PERMISSION_DENIED with the server's
// reason, rather than waiting out teacher_timeout.
TEST(RemoteTeacher, AJobTokenIsShownToTheTeacherAndAWrongOneIsAClearError) {
  const std::string secret_file = ::testing::TempDir() + "/remote_job_secret";
  const std::string secret = "a-secret-of-at-least-thirty-two-bytes!!";
  std::ofstream(secret_file) << secret;
  teacher::TeacherServerConfig config = tu::Config();
  config.auth.insecure = false;
  config.auth.pool_secret_file = secret_file;
  tu::Started s = tu::Start(config);
  auto connect = [&](const std::string& token_job) {
    RemoteTeacherOptions o;
    o.tls.insecure = true;
    o.address = "127.0.0.1:" + std::to_string(s.server->port());
    o.wire_dtype = DType::kF32;
    o.job_id = "job-a";
    o.job_token = rpc::MakeJobToken(secret, token_job);
    o.timeout = absl::Seconds(30);
    o.reconnect_timeout = absl::Seconds(30);
    return MakeRemoteTeacher(o);
  };
  tu::MicroBatch m = tu::MakeMicroBatch(2, 4, 50);
  auto mine = connect("job-a");
  ASSERT_TRUE(mine.ok()) << mine.status();
  auto r = AwaitLogits((*mine)->SubmitLogits(m.images, m.idx), absl::Seconds(30));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(torch::allclose(*r, tu::Expected(m), 1e-5, 1e-5));

  auto theirs = connect("job-b");
  ASSERT_TRUE(theirs.ok()) << theirs.status();  // ModelInfo needs no token.
  auto refused = AwaitLogits((*theirs)->SubmitLogits(m.images, m.idx), absl::Seconds(25));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied) << refused.status();
  EXPECT_NE(refused.status().message().find("the job token does not grant this job"),
            std::string::npos)
      << refused.status();
}

}  // namespace
}  // namespace mkd::client
