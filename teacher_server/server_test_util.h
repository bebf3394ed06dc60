// Shared fixtures for the teacher server tests: a tiny seeded ViT teacher,
// an engine wrapper that counts and can hold forward passes, a server on a
// loopback port, request builders and a bounded-deadline Distill stream.
// Test code; header-only.
#ifndef MKD_TEACHER_SERVER_SERVER_TEST_UTIL_H_
#define MKD_TEACHER_SERVER_SERVER_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <thread>

#include "common/masking.h"
#include "common/vit.h"
#include "common/vit_weights.h"
#include "proto/tensor_codec.h"
#include "rpc/pool_auth.h"
#include "teacher_server/server.h"

namespace mkd::teacher::test_util {

namespace v1 = maskedkd::v1;

inline ViTConfig TinyModel() {
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
inline std::string TinyWeights() {
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

inline TeacherServerConfig Config() {
  TeacherServerConfig c;
  c.model = TinyModel();
  c.weights = TinyWeights();
  c.listen = "127.0.0.1:0";
  c.metrics_listen = "127.0.0.1:0";
  c.max_micro_batch_images = 16;
  c.batcher.max_queue_delay_us = 200;
  c.tls.insecure = true;   // Plaintext on loopback; tests/tls_test.cc covers TLS.
  c.auth.insecure = true;  // Open; server_auth_test and pool_auth_test cover the checks.
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
  torch::Tensor HostEmpty(at::IntArrayRef sizes, torch::Dtype dtype) const override {
    return inner_->HostEmpty(sizes, dtype);
  }
  absl::StatusOr<EngineInput> Upload(const std::vector<torch::Tensor>& p,
                                     const std::vector<torch::Tensor>& i) override {
    return inner_->Upload(p, i);
  }
  absl::StatusOr<EngineOutput> Launch(EngineInput in, bool f) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++runs_;
    entered_.notify_all();
    opened_.wait(lock, [&] { return open_; });
    lock.unlock();
    return inner_->Launch(std::move(in), f);
  }
  absl::StatusOr<EngineOutput> Collect(EngineOutput out) override {
    return inner_->Collect(std::move(out));
  }
  std::optional<int64_t> PeakMemoryBytes() const override { return inner_->PeakMemoryBytes(); }
  void Close() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = false;
  }
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
  int runs() {
    std::lock_guard<std::mutex> l(mu_);
    return runs_;
  }

 private:
  std::unique_ptr<Engine> inner_;
  std::mutex mu_;
  std::condition_variable entered_, opened_;
  bool open_ = true;
  int runs_ = 0;
};

// Polls `done` every 10 ms for at most 30 s (a bounded wait for state
// another thread changes); returns its last value.
inline bool WaitUntil(const std::function<bool()>& done) {
  for (int i = 0; i < 3000 && !done(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

struct Started {
  std::unique_ptr<TeacherServer> server;
  GatedEngine* engine;
  std::unique_ptr<v1::TeacherService::Stub> stub;

  Started(std::unique_ptr<TeacherServer> s, GatedEngine* e,
          std::unique_ptr<v1::TeacherService::Stub> st)
      : server(std::move(s)), engine(e), stub(std::move(st)) {}
  Started(Started&&) = default;
  // A test that fails with the gate closed must not hang in the drain.
  ~Started() {
    if (server) engine->Open();
  }
};

inline Started Start(TeacherServerConfig config = Config(),
                     TeacherServiceImpl::Clock clock = nullptr) {
  auto inner = Engine::Create(config);
  EXPECT_TRUE(inner.ok()) << inner.status();
  auto gated = std::make_unique<GatedEngine>(std::move(*inner));
  GatedEngine* raw = gated.get();
  auto server = TeacherServer::Start(config, std::move(gated), std::move(clock));
  EXPECT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                     grpc::InsecureChannelCredentials());
  return {std::move(*server), raw, v1::TeacherService::NewStub(channel)};
}

// Normalised-looking images and per-row random kept indices, seeded.
struct MicroBatch {
  torch::Tensor images, idx;
};
inline MicroBatch MakeMicroBatch(int64_t b, int64_t k, uint64_t seed) {
  torch::manual_seed(seed);
  MicroBatch m;
  m.images = torch::randn({b, 3, 16, 16});
  m.idx =
      torch::rand({b, 16}).argsort(/*dim=*/1, /*descending=*/false).narrow(1, 0, k).contiguous();
  return m;
}

inline v1::DistillRequest Request(const std::string& job, uint64_t id, const MicroBatch& m,
                                  v1::DType dtype = v1::DTYPE_F32, bool images = false) {
  v1::DistillRequest r;
  r.set_job_id(job);
  r.set_micro_batch_id(id);
  r.set_micro_batch_size(static_cast<int32_t>(m.idx.size(0)));
  r.set_kept_patches(static_cast<int32_t>(m.idx.size(1)));
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

inline torch::Tensor Expected(const MicroBatch& m) {
  torch::manual_seed(7);
  VisionTransformer model(TinyModel());
  EXPECT_TRUE(LoadViTWeightsFile(*model, TinyWeights()).ok());
  model->eval();
  torch::NoGradGuard no_grad;
  return model->ForwardKept(m.images, m.idx).logits;
}

inline torch::Tensor Logits(const v1::DistillResponse& r) {
  auto t = proto::DecodeFloats(r.logits(), r.logits_dtype(),
                               {r.logits_shape().begin(), r.logits_shape().end()}, "logits");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : torch::Tensor();
}

// A Distill stream with a bounded deadline, so a broken server fails the
// test instead of hanging it.
class Stream {
 public:
  // `job_token` ("": none) is sent as the stream's x-mkd-token (a pool
  // token) or x-mkd-job-token (today's job token).
  explicit Stream(v1::TeacherService::Stub* stub, const std::string& job_token = "") {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    rpc::AddTokenMetadata(&ctx_, job_token);
    rw_ = stub->Distill(&ctx_);
  }
  bool Write(const v1::DistillRequest& r) { return rw_->Write(r); }
  std::map<uint64_t, v1::DistillResponse> Read(int n) {
    std::map<uint64_t, v1::DistillResponse> out;
    v1::DistillResponse r;
    for (int i = 0; i < n && rw_->Read(&r); ++i) out[r.micro_batch_id()] = r;
    return out;
  }
  // The client gives up on the stream (as a killed or timed-out student
  // does); its Finish then reports CANCELLED.
  grpc::Status Cancel() {
    ctx_.TryCancel();
    return rw_->Finish();
  }
  // Reads until the server ends the stream; its status.
  grpc::Status AwaitEnd() {
    v1::DistillResponse extra;
    while (rw_->Read(&extra)) {
    }
    return rw_->Finish();
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

}  // namespace mkd::teacher::test_util

#endif  // MKD_TEACHER_SERVER_SERVER_TEST_UTIL_H_
