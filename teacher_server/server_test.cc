// The teacher server over real gRPC on loopback: model info, logits against
// a direct forward pass, validation, idempotency.
#include "teacher_server/server.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "teacher_server/server_test_util.h"

namespace mkd::teacher::test_util {
namespace {

TEST(TeacherServer, ReportsModelInfo) {
  Started s = Start();
  grpc::ClientContext ctx;
  v1::ModelInfo info;
  ASSERT_TRUE(s.stub->GetModelInfo(&ctx, v1::ModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.img_size(), 16);
  EXPECT_EQ(info.patch_size(), 4);
  EXPECT_EQ(info.grid_size(), 4);
  EXPECT_EQ(info.in_chans(), 3);
  EXPECT_EQ(info.num_classes(), 5);
  EXPECT_EQ(info.depth(), 2);
  EXPECT_EQ(info.embed_dim(), 32);
  EXPECT_EQ(info.mean_size(), 3);
  EXPECT_EQ(info.compute_dtype(), v1::DTYPE_F32);
  EXPECT_EQ(info.device(), "cpu");
  EXPECT_NE(info.model_id().find("@"), std::string::npos);
}

TEST(TeacherServer, AnswersMicroBatchesWithTheModelsLogits) {
  Started s = Start();
  Stream stream(s.stub.get());
  MicroBatch a = MakeMicroBatch(3, 8, 1), b = MakeMicroBatch(2, 4, 2), c = MakeMicroBatch(2, 16, 3);
  ASSERT_TRUE(stream.Write(Request("job", 1, a)));
  ASSERT_TRUE(stream.Write(Request("job", 2, b, v1::DTYPE_F16)));
  ASSERT_TRUE(stream.Write(Request("job", 3, c, v1::DTYPE_F32, /*images=*/true)));
  auto got = stream.Read(3);
  ASSERT_EQ(got.size(), 3u);
  for (auto& [id, r] : got) ASSERT_EQ(r.code(), 0) << id << ": " << r.message();
  EXPECT_TRUE(torch::allclose(Logits(got[1]), Expected(a), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(Logits(got[2]), Expected(b), 1e-2, 1e-2));  // fp16 wire.
  EXPECT_FALSE(torch::allclose(Logits(got[2]), Expected(b), 1e-7, 1e-7));
  EXPECT_TRUE(torch::allclose(Logits(got[3]), Expected(c), 1e-5, 1e-5));
  EXPECT_GE(got[1].compute_seconds(), 0.0);
  EXPECT_GE(got[1].batched_with(), 1);
  EXPECT_TRUE(stream.Close().ok());
}

TEST(TeacherServer, BadMicroBatchIsRejectedAndTheStreamCarriesOn) {
  Started s = Start();
  Stream bad_stream(s.stub.get()), other(s.stub.get());
  MicroBatch m = MakeMicroBatch(2, 5, 4);
  v1::DistillRequest bad = Request("job", 1, m);
  bad.set_payload(bad.payload().substr(7));
  v1::DistillRequest dup = Request("job", 2, m);
  std::string idx = dup.kept_indices();
  idx.replace(4, 4, idx.substr(0, 4));  // Row 0 repeats its first index.
  dup.set_kept_indices(idx);
  ASSERT_TRUE(bad_stream.Write(bad));
  ASSERT_TRUE(bad_stream.Write(dup));
  ASSERT_TRUE(bad_stream.Write(Request("job", 3, m)));
  ASSERT_TRUE(other.Write(Request("other", 1, m)));
  auto got = bad_stream.Read(3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1].code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(got[1].message().find("payload:"), std::string::npos) << got[1].message();
  EXPECT_EQ(got[2].code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(got[2].message().find("repeats in row 0"), std::string::npos) << got[2].message();
  EXPECT_EQ(got[3].code(), 0);
  EXPECT_TRUE(torch::allclose(Logits(got[3]), Expected(m), 1e-5, 1e-5));
  EXPECT_EQ(other.Read(1).at(1).code(), 0);
  EXPECT_TRUE(bad_stream.Close().ok());
  EXPECT_TRUE(other.Close().ok());
}

TEST(TeacherServer, RepeatedMicroBatchIdIsAnsweredNotRecomputed) {
  Started s = Start();
  MicroBatch m = MakeMicroBatch(2, 6, 5);
  {
    Stream stream(s.stub.get());
    ASSERT_TRUE(stream.Write(Request("job", 42, m)));
    ASSERT_EQ(stream.Read(1).at(42).code(), 0);
    EXPECT_TRUE(stream.Close().ok());
  }
  const int runs = s.engine->runs();
  Stream again(s.stub.get());  // As a client does after reconnecting.
  ASSERT_TRUE(again.Write(Request("job", 42, m)));
  auto got = again.Read(1);
  ASSERT_EQ(got.at(42).code(), 0);
  EXPECT_TRUE(torch::allclose(Logits(got.at(42)), Expected(m), 1e-5, 1e-5));
  EXPECT_EQ(s.engine->runs(), runs);
  EXPECT_TRUE(again.Close().ok());
  Stream other(s.stub.get());                               // A stream carries one job.
  ASSERT_TRUE(other.Write(Request("another-job", 42, m)));  // Ids are per job.
  EXPECT_EQ(other.Read(1).at(42).code(), 0);
  EXPECT_EQ(s.engine->runs(), runs + 1);
  EXPECT_TRUE(other.Close().ok());
}

TEST(TeacherServer, AReusedIdWithAnotherRequestIsRefusedNotAnsweredWithTheFirstsLogits) {
  Started s = Start();
  MicroBatch m = MakeMicroBatch(2, 6, 5), other = MakeMicroBatch(2, 6, 9);
  Stream stream(s.stub.get());
  ASSERT_TRUE(stream.Write(Request("job", 7, m)));
  ASSERT_EQ(stream.Read(1).at(7).code(), 0);
  ASSERT_TRUE(stream.Write(Request("job", 7, other)));  // Same id, other pixels and indices.
  auto got = stream.Read(1);
  EXPECT_EQ(got.at(7).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(got.at(7).message().find("already used by job 'job' for a different request"),
            std::string::npos)
      << got.at(7).message();
  EXPECT_TRUE(got.at(7).logits().empty());
  ASSERT_TRUE(stream.Write(Request("job", 7, m)));  // The genuine re-send still hits the cache.
  EXPECT_EQ(stream.Read(1).at(7).code(), 0);
  EXPECT_TRUE(stream.Close().ok());
}

TEST(TeacherServer, ATimeoutShorterThanTheQueueDelayStartsAtOnceOnAnIdleServer) {
  TeacherServerConfig config = Config();
  config.batcher.max_queue_delay_us = 200000;  // 200 ms of waiting for company...
  Started s = Start(config);
  Stream stream(s.stub.get());
  v1::DistillRequest r = Request("job", 1, MakeMicroBatch(1, 4, 3));
  r.set_timeout_ms(50);  // ... would outlast this.
  ASSERT_TRUE(stream.Write(r));
  EXPECT_EQ(stream.Read(1).at(1).code(), 0);
  EXPECT_TRUE(stream.Close().ok());
}

TEST(TeacherServer, FullQueueAnswersResourceExhaustedAndExpiredWorkIsDropped) {
  TeacherServerConfig config = Config();
  config.batcher.max_queued = 2;
  Started s = Start(config);
  s.engine->Close();
  Stream stream(s.stub.get());
  MicroBatch m = MakeMicroBatch(1, 4, 6);
  ASSERT_TRUE(stream.Write(Request("job", 1, m)));
  ASSERT_TRUE(s.engine->WaitRuns(1));  // The batcher holds #1 at the gate.
  v1::DistillRequest expiring = Request("job", 2, m);
  expiring.set_timeout_ms(1);
  ASSERT_TRUE(stream.Write(expiring));
  ASSERT_TRUE(stream.Write(Request("job", 3, m)));
  ASSERT_TRUE(stream.Write(Request("job", 4, m)));  // Queue holds #2, #3: full.
  auto rejected = stream.Read(1);
  ASSERT_EQ(rejected.count(4), 1u)
      << (rejected.empty() ? std::string("nothing") : rejected.begin()->second.DebugString());
  EXPECT_EQ(rejected[4].code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // Outlive #2's 1 ms deadline.
  s.engine->Open();
  auto rest = stream.Read(3);
  ASSERT_EQ(rest.size(), 3u);
  EXPECT_EQ(rest[1].code(), 0);
  EXPECT_EQ(rest[2].code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(rest[3].code(), 0);
  EXPECT_EQ(s.engine->runs(), 2);  // #2 was never computed.
  EXPECT_TRUE(stream.Close().ok());
}

}  // namespace
}  // namespace mkd::teacher::test_util
