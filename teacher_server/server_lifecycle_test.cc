// The teacher server's life under load and at its end, over real gRPC on
// loopback: backpressure, deadlines, draining, health, bf16 compute, and
// /metrics checked by promtool.
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "common/thread.h"
#include "teacher_server/server.h"
#include "teacher_server/server_test_util.h"

namespace mkd::teacher::test_util {
namespace {

TEST(TeacherServer, ShutdownDrainsAcceptedWork) {
  Started s = Start();
  s.engine->Close();
  Stream stream(s.stub.get());
  MicroBatch m = MakeMicroBatch(1, 4, 7);
  ASSERT_TRUE(stream.Write(Request("job", 1, m)));
  ASSERT_TRUE(s.engine->WaitRuns(1));
  ASSERT_TRUE(stream.Write(Request("job", 2, m)));
  ASSERT_TRUE(stream.Write(Request("job", 3, m)));
  // A finished client write is not yet accepted work: wait (bounded) until
  // the batcher has queued both, so shutdown really has work to drain.
  ASSERT_TRUE(WaitUntil([&] { return s.server->metrics().queued() == 2; }));
  Thread stopper("mkd-stopper", [&] { s.server->Shutdown(absl::Milliseconds(500)); });
  // Accepted work is computed although shutdown has begun.
  EXPECT_TRUE(WaitUntil([&] { return !s.server->accepting(); }));
  s.engine->Open();
  auto got = stream.Read(3);
  EXPECT_TRUE(stopper.Join().ok());
  ASSERT_EQ(got.size(), 3u);
  for (auto& [id, r] : got) EXPECT_EQ(r.code(), 0) << id << ": " << r.message();
}

// A client that cancels its stream with work still queued: the server
// finishes the stream (its reactor is done) while the batcher still holds
// that stream's micro-batches, whose answers then have nowhere to go. The
// server must neither crash nor wedge: the queue drains, and another
// client is answered. (Under ASan, a done callback that touched the dead
// reactor would fail here.)
TEST(TeacherServer, ACancelledStreamWithQueuedWorkLeavesTheServerWell) {
  Started s = Start();
  s.engine->Close();
  MicroBatch m = MakeMicroBatch(1, 4, 11);
  {
    Stream doomed(s.stub.get());
    ASSERT_TRUE(doomed.Write(Request("doomed", 1, m)));
    ASSERT_TRUE(s.engine->WaitRuns(1));  // One in the engine, held by the gate.
    for (uint64_t id = 2; id <= 4; ++id) ASSERT_TRUE(doomed.Write(Request("doomed", id, m)));
    ASSERT_TRUE(WaitUntil([&] { return s.server->metrics().queued() == 3; }));
    EXPECT_EQ(doomed.Cancel().error_code(), grpc::StatusCode::CANCELLED);
  }
  s.engine->Open();
  // Work that was accepted is run or dropped, never left queued.
  EXPECT_TRUE(WaitUntil([&] { return s.server->metrics().queued() == 0; }));
  Stream next(s.stub.get());
  ASSERT_TRUE(next.Write(Request("next", 1, m)));
  auto got = next.Read(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got.at(1).code(), 0) << got.at(1).message();
  EXPECT_TRUE(next.Close().ok());
}

TEST(TeacherServer, NewWorkDuringShutdownIsUnavailable) {
  Started s = Start();
  Stream stream(s.stub.get());
  MicroBatch m = MakeMicroBatch(1, 4, 9);
  ASSERT_TRUE(stream.Write(Request("job", 1, m)));
  ASSERT_EQ(stream.Read(1).at(1).code(), 0);
  Thread stopper("mkd-stopper", [&] { s.server->Shutdown(absl::Seconds(5)); });
  // The batcher stops accepting before the gRPC server closes streams, so
  // an open stream's next micro-batch is refused, not lost.
  v1::DistillResponse refused;
  for (uint64_t id = 2; id < 2000; ++id) {
    ASSERT_TRUE(stream.Write(Request("job", id, m)));
    auto got = stream.Read(1);
    ASSERT_EQ(got.size(), 1u);
    if (got.begin()->second.code() != 0) {
      refused = got.begin()->second;
      break;
    }
  }
  EXPECT_EQ(refused.code(), grpc::StatusCode::UNAVAILABLE) << refused.message();
  EXPECT_NE(refused.message().find("shutting down"), std::string::npos);
  stream.Close();
  EXPECT_TRUE(stopper.Join().ok());
}

TEST(TeacherServer, Bfloat16ComputeAndFeatures) {
  TeacherServerConfig config = Config();
  config.dtype = DType::kBF16;
  Started s = Start(config);
  Stream stream(s.stub.get());
  MicroBatch m = MakeMicroBatch(2, 8, 10);
  v1::DistillRequest r = Request("job", 1, m);
  r.set_want_features(true);
  ASSERT_TRUE(stream.Write(r));
  auto got = stream.Read(1).at(1);
  ASSERT_EQ(got.code(), 0) << got.message();
  torch::Tensor logits = Logits(got);
  EXPECT_TRUE(torch::allclose(logits, Expected(m), 0.1, 0.1));
  EXPECT_FALSE(torch::equal(logits, Expected(m)));  // Really computed in bf16.
  ASSERT_EQ(got.features_shape_size(), 2);
  EXPECT_EQ(got.features_shape(0), 2);
  EXPECT_EQ(got.features_shape(1), 32);  // embed_dim
  EXPECT_EQ(got.features().size(), 2u * 32 * 4);
  EXPECT_TRUE(stream.Close().ok());
}

TEST(TeacherServer, HealthCheckSaysServing) {
  Started s = Start();
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(s.server->port()),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub generic(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Slice empty("", 0);  // HealthCheckRequest{service: ""} encodes to no bytes.
  grpc::ByteBuffer request(&empty, 1), response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status st) {
                      std::lock_guard<std::mutex> l(mu);
                      status = st;
                      done = true;
                      cv.notify_all();
                    });
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return done; }));
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING
}

TEST(TeacherServer, MetricsPassPromtool) {
  Started s = Start();
  Stream stream(s.stub.get());
  MicroBatch m = MakeMicroBatch(2, 8, 8);
  ASSERT_TRUE(stream.Write(Request("job", 1, m)));
  v1::DistillRequest bad = Request("job", 2, m);
  bad.set_kept_patches(0);
  ASSERT_TRUE(stream.Write(bad));
  ASSERT_EQ(stream.Read(2).size(), 2u);
  EXPECT_TRUE(stream.Close().ok());

  httplib::Client http("127.0.0.1", s.server->metrics_port());
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const std::string& text = res->body;
  for (const char* name :
       {"mkd_teacher_requests_total{code=\"OK\"} 1",
        "mkd_teacher_requests_total{code=\"INVALID_ARGUMENT\"} 1",
        "mkd_teacher_queue_seconds_bucket", "mkd_teacher_compute_seconds_count 1",
        "mkd_teacher_batch_images_sum 2", "mkd_teacher_batch_tokens_sum 18",
        "mkd_teacher_in_flight_requests 0", "mkd_teacher_flops_total",
        "mkd_teacher_flops_saved_total", "mkd_teacher_received_bytes_total"}) {
    EXPECT_NE(text.find(name), std::string::npos) << name << "\n" << text;
  }
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("mkd_metrics_" + std::to_string(getpid()) + ".txt"))
                               .string();
  std::ofstream(path) << text;
  const std::string cmd = "promtool check metrics < " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[4096];
  std::string out;
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << "promtool: " << out;
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace mkd::teacher::test_util
