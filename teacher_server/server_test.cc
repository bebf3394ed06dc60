// The teacher server over real gRPC on loopback: model info, logits against
// a direct forward pass, validation, idempotency, backpressure, deadlines,
// draining, health, and /metrics checked by promtool.
#include "teacher_server/server.h"

#include <gtest/gtest.h>
#include <grpcpp/generic/generic_stub.h>
#include <httplib.h>
#include <torch/torch.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/masking.h"
#include "common/vit.h"
#include "common/vit_weights.h"
#include "proto/tensor_codec.h"

namespace mkd::teacher {
namespace {

namespace v1 = maskedkd::v1;

ViTConfig TinyModel() {
  ViTConfig c;
  c.img_size = 16;
  c.patch_size = 4;
  c.in_chans = 3;
  c.embed_dim = 32;
  c.depth = 2;
  c.num_heads = 2;
  c.num_classes = 5;
  return c;
}

// Writes seeded weights for TinyModel() once per test binary.
std::string TinyWeights() {
  static const std::string path = [] {
    torch::manual_seed(7);
    VisionTransformer m(TinyModel());
    std::string p = (std::filesystem::temp_directory_path() /
                     ("mkd_server_test_" + std::to_string(getpid()) + ".safetensors"))
                        .string();
    EXPECT_TRUE(SaveViTWeights(*m, p).ok());
    return p;
  }();
  return path;
}

TeacherServerConfig Config() {
  TeacherServerConfig c;
  c.model = TinyModel();
  c.weights = TinyWeights();
  c.listen = "127.0.0.1:0";
  c.metrics_listen = "127.0.0.1:0";
  c.max_micro_batch_images = 16;
  c.batcher.max_queue_delay_us = 200;
  return c;
}

// Wraps the real engine: counts forward passes and can hold them at a gate,
// so tests decide exactly when the batcher is busy.
class GatedEngine final : public Engine {
 public:
  explicit GatedEngine(std::unique_ptr<Engine> inner) : inner_(std::move(inner)) {}
  const ViTConfig& config() const override { return inner_->config(); }
  const std::string& model_id() const override { return inner_->model_id(); }
  std::string device() const override { return inner_->device(); }
  absl::StatusOr<EngineOutput> Run(const torch::Tensor& p, const torch::Tensor& i,
                                   bool f) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++runs_;
    entered_.notify_all();
    opened_.wait(lock, [&] { return open_; });
    lock.unlock();
    return inner_->Run(p, i, f);
  }
  void Close() { std::lock_guard<std::mutex> l(mu_); open_ = false; }
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    opened_.notify_all();
  }
  // Waits (bounded) until `n` forward passes have started.
  bool WaitRuns(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return entered_.wait_for(lock, std::chrono::seconds(30), [&] { return runs_ >= n; });
  }
  int runs() { std::lock_guard<std::mutex> l(mu_); return runs_; }

 private:
  std::unique_ptr<Engine> inner_;
  std::mutex mu_;
  std::condition_variable entered_, opened_;
  bool open_ = true;
  int runs_ = 0;
};

struct Started {
  std::unique_ptr<TeacherServer> server;
  GatedEngine* engine;
  std::unique_ptr<v1::TeacherService::Stub> stub;
};

Started Start(TeacherServerConfig config = Config()) {
  auto inner = Engine::Create(config);
  EXPECT_TRUE(inner.ok()) << inner.status();
  auto gated = std::make_unique<GatedEngine>(std::move(*inner));
  GatedEngine* raw = gated.get();
  auto server = TeacherServer::Start(config, std::move(gated));
  EXPECT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                     grpc::InsecureChannelCredentials());
  return {std::move(*server), raw, v1::TeacherService::NewStub(channel)};
}

// Normalised-looking images and per-row random kept indices, seeded.
struct MicroBatch {
  torch::Tensor images, idx;
};
MicroBatch MakeMicroBatch(int64_t b, int64_t k, uint64_t seed) {
  torch::manual_seed(seed);
  MicroBatch m;
  m.images = torch::randn({b, 3, 16, 16});
  m.idx = torch::rand({b, 16}).argsort(/*dim=*/1, /*descending=*/false).narrow(1, 0, k).contiguous();
  return m;
}

v1::DistillRequest Request(const std::string& job, uint64_t id, const MicroBatch& m,
                           v1::DType dtype = v1::DTYPE_F32, bool images = false) {
  v1::DistillRequest r;
  r.set_job_id(job);
  r.set_micro_batch_id(id);
  r.set_batch(static_cast<int32_t>(m.idx.size(0)));
  r.set_kept(static_cast<int32_t>(m.idx.size(1)));
  r.set_kept_indices(proto::EncodeIndices(m.idx));
  r.set_payload_dtype(dtype);
  if (images) {
    r.set_payload_kind(v1::PAYLOAD_KIND_IMAGES);
    r.set_payload(proto::EncodeFloats(m.images, dtype));
  } else {
    r.set_payload(proto::EncodeFloats(CutPatches(m.images, m.idx, 4), dtype));
  }
  return r;
}

torch::Tensor Expected(const MicroBatch& m) {
  torch::manual_seed(7);
  VisionTransformer model(TinyModel());
  EXPECT_TRUE(LoadViTWeightsFile(*model, TinyWeights()).ok());
  model->eval();
  torch::NoGradGuard no_grad;
  return model->ForwardKept(m.images, m.idx).logits;
}

torch::Tensor Logits(const v1::DistillResponse& r) {
  auto t = proto::DecodeFloats(r.logits(), r.logits_dtype(),
                               {r.logits_shape().begin(), r.logits_shape().end()}, "logits");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : torch::Tensor();
}

// A Distill stream with a bounded deadline, so a broken server fails the
// test instead of hanging it.
class Stream {
 public:
  explicit Stream(v1::TeacherService::Stub* stub) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    rw_ = stub->Distill(&ctx_);
  }
  bool Write(const v1::DistillRequest& r) { return rw_->Write(r); }
  std::map<uint64_t, v1::DistillResponse> Read(int n) {
    std::map<uint64_t, v1::DistillResponse> out;
    v1::DistillResponse r;
    for (int i = 0; i < n && rw_->Read(&r); ++i) out[r.micro_batch_id()] = r;
    return out;
  }
  grpc::Status Close() {
    rw_->WritesDone();
    v1::DistillResponse extra;
    while (rw_->Read(&extra)) {
    }
    return rw_->Finish();
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::DistillRequest, v1::DistillResponse>> rw_;
};

TEST(TeacherServer, ReportsModelInfo) {
  Started s = Start();
  grpc::ClientContext ctx;
  v1::ModelInfo info;
  ASSERT_TRUE(s.stub->GetModelInfo(&ctx, v1::ModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.image_size(), 16);
  EXPECT_EQ(info.patch_size(), 4);
  EXPECT_EQ(info.grid_size(), 4);
  EXPECT_EQ(info.in_channels(), 3);
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
  ASSERT_TRUE(again.Write(Request("another-job", 42, m)));  // Ids are per job.
  EXPECT_EQ(again.Read(1).at(42).code(), 0);
  EXPECT_EQ(s.engine->runs(), runs + 1);
  EXPECT_TRUE(again.Close().ok());
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
  ASSERT_EQ(rejected.count(4), 1u);
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

TEST(TeacherServer, ShutdownDrainsAcceptedWork) {
  Started s = Start();
  s.engine->Close();
  Stream stream(s.stub.get());
  MicroBatch m = MakeMicroBatch(1, 4, 7);
  ASSERT_TRUE(stream.Write(Request("job", 1, m)));
  ASSERT_TRUE(s.engine->WaitRuns(1));
  ASSERT_TRUE(stream.Write(Request("job", 2, m)));
  ASSERT_TRUE(stream.Write(Request("job", 3, m)));
  auto rejected_soon = std::thread([&] { s.server->Shutdown(absl::Milliseconds(500)); });
  // Accepted work is computed although shutdown has begun.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  s.engine->Open();
  auto got = stream.Read(3);
  rejected_soon.join();
  ASSERT_EQ(got.size(), 3u);
  for (auto& [id, r] : got) EXPECT_EQ(r.code(), 0) << id << ": " << r.message();
}

TEST(TeacherServer, NewWorkDuringShutdownIsUnavailable) {
  Started s = Start();
  Stream stream(s.stub.get());
  MicroBatch m = MakeMicroBatch(1, 4, 9);
  ASSERT_TRUE(stream.Write(Request("job", 1, m)));
  ASSERT_EQ(stream.Read(1).at(1).code(), 0);
  std::thread stopper([&] { s.server->Shutdown(absl::Seconds(5)); });
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
  stopper.join();
}

TEST(TeacherServer, Bfloat16ComputeAndFeatures) {
  TeacherServerConfig config = Config();
  config.dtype = "bf16";
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
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                    &response, [&](grpc::Status st) {
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
  bad.set_kept(0);
  ASSERT_TRUE(stream.Write(bad));
  ASSERT_EQ(stream.Read(2).size(), 2u);
  EXPECT_TRUE(stream.Close().ok());

  httplib::Client http("127.0.0.1", s.server->metrics_port());
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const std::string& text = res->body;
  for (const char* name :
       {"mkd_teacher_requests_total{code=\"OK\"} 1", "mkd_teacher_requests_total{code=\"INVALID_ARGUMENT\"} 1",
        "mkd_teacher_queue_seconds_bucket", "mkd_teacher_compute_seconds_count 1",
        "mkd_teacher_batch_images_sum 2", "mkd_teacher_batch_tokens_sum 18",
        "mkd_teacher_in_flight_requests 0", "mkd_teacher_flops_total", "mkd_teacher_flops_saved_total",
        "mkd_teacher_received_bytes_total"}) {
    EXPECT_NE(text.find(name), std::string::npos) << name << "\n" << text;
  }
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("mkd_metrics_" + std::to_string(getpid()) + ".txt")).string();
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
}  // namespace mkd::teacher
