// Teacher serving cost, measured side by side in one run:
//  1. serving overhead: micro-batches through a real gRPC server on loopback
//     (encode excluded: requests are built before timing) vs the same
//     forward passes called on the bare engine, at keep 100/50/25%. The
//     server's token budget is one micro-batch, so both run identical
//     batches and the difference is gRPC, decoding, queueing and encoding;
//  2. bytes per image on the wire vs a full fp32 image, per keep and dtype.
// Random teacher weights: only cost matters here.
//
// On a GPU (--device cuda --dtype bf16) both sides get fp16 patches on the
// host, so each copies the same bytes to the device; the server's batcher
// overlaps one batch's copy with the previous one's forward, the bare
// engine runs its phases back to back. It also prints the engine's peak
// GPU memory.
//
// Usage: teacher_server_bench [--teacher deit_tiny_patch16_224] [--images 8]
//          [--count 8] [--rounds 3] [--threads N] [--device cpu|cuda]
//          [--dtype fp32|bf16|fp16]
#include <grpcpp/grpcpp.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "bench/bench_util.h"
#include "common/flags.h"
#include "common/masking.h"
#include "common/runtime.h"
#include "common/status_macros.h"
#include "common/thread.h"
#include "common/vit_weights.h"
#include "proto/tensor_codec.h"
#include "teacher_server/server.h"

namespace mkd::bench {
namespace {

namespace v1 = maskedkd::v1;

struct Work {
  torch::Tensor patches, idx;                // For the bare engine.
  std::vector<v1::DistillRequest> requests;  // The same, encoded.
};

Work MakeWork(const ViTConfig& c, int64_t images, int64_t count, int64_t k, v1::DType dtype) {
  Work w;
  torch::Tensor x = torch::randn({images, c.in_chans, c.img_size, c.img_size});
  w.idx = torch::rand({images, c.num_patches()}).argsort(1, false).narrow(1, 0, k).contiguous();
  // The bare engine gets what the server decodes: the wire's dtype.
  w.patches = CutPatches(x, w.idx, c.patch_size)
                  .to(dtype == v1::DTYPE_F16 ? torch::kFloat16 : torch::kFloat32);
  for (int64_t i = 0; i < count; ++i) {
    v1::DistillRequest r;
    r.set_job_id("bench");
    r.set_micro_batch_id(static_cast<uint64_t>(k) << 32 | static_cast<uint64_t>(i));
    r.set_micro_batch_size(static_cast<int32_t>(images));
    r.set_kept_patches(static_cast<int32_t>(k));
    r.set_kept_indices(proto::EncodeIndices(w.idx));
    r.set_payload_dtype(dtype);
    r.set_payload(proto::EncodeFloats(w.patches, dtype));
    w.requests.push_back(std::move(r));
  }
  return w;
}

// Streams `requests` (new ids each call, so nothing is answered from the
// server's cache) and waits for every answer.
absl::Status Serve(v1::TeacherService::Stub* stub, std::vector<v1::DistillRequest>& requests,
                   uint64_t* epoch) {
  ++*epoch;
  for (auto& r : requests)
    r.set_micro_batch_id((r.micro_batch_id() & 0xffffffffffull) | (*epoch << 40));
  grpc::ClientContext ctx;
  auto stream = stub->Distill(&ctx);
  Thread writer("mkd-writer", [&] {
    for (const auto& r : requests) stream->Write(r);
    stream->WritesDone();
  });
  v1::DistillResponse resp;
  size_t ok = 0;
  while (stream->Read(&resp)) ok += resp.code() == 0;
  writer.Join().IgnoreError();
  grpc::Status st = stream->Finish();
  if (!st.ok()) return absl::InternalError(st.error_message());
  if (ok != requests.size()) return absl::InternalError("a micro-batch failed");
  return absl::OkStatus();
}

absl::Status Run(const ParsedFlags& f) {
  const std::string teacher = f.Get("teacher").value_or("deit_tiny_patch16_224");
  MKD_ASSIGN_OR_RETURN(int64_t images, f.GetInt("images", 8));
  MKD_ASSIGN_OR_RETURN(int64_t count, f.GetInt("count", 8));
  MKD_ASSIGN_OR_RETURN(int64_t rounds, f.GetInt("rounds", 3));
  MKD_ASSIGN_OR_RETURN(int64_t threads, f.GetInt("threads", 0));
  RuntimeReport rt = ConfigureRuntime(static_cast<int>(threads));
  const std::string device = f.Get("device").value_or("cpu");
  const std::string dtype = f.Get("dtype").value_or("fp32");

  const std::string dir = std::filesystem::temp_directory_path() / "mkd_server_bench";
  std::filesystem::create_directories(dir);
  teacher::TeacherServerConfig config;
  config.tls.insecure = true;
  config.auth.insecure = true;
  MKD_ASSIGN_OR_RETURN(config.model, ResolveViTConfig(teacher));
  config.weights = dir + "/teacher.safetensors";
  {
    torch::manual_seed(1);
    VisionTransformer t(config.model);
    MKD_RETURN_IF_ERROR(SaveViTWeights(*t, config.weights));
  }
  const ViTConfig& c = config.model;
  const int64_t n = c.num_patches();
  const std::vector<int64_t> keeps = {n, n / 2, n / 4};
  config.device = device;
  MKD_ASSIGN_OR_RETURN(config.dtype, ParseFloatTypeName(dtype));
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "";
  config.batcher.max_queue_delay_us = 0;
  config.batcher.max_tokens_per_batch = 1;  // Never merge: same batches as the bare engine.
  MKD_ASSIGN_OR_RETURN(auto engine, teacher::Engine::Create(config));
  teacher::Engine* bare = engine.get();
  MKD_ASSIGN_OR_RETURN(auto server, teacher::TeacherServer::Start(config, std::move(engine)));
  auto stub = v1::TeacherService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(server->port()), grpc::InsecureChannelCredentials()));

  std::vector<Work> work;
  for (int64_t k : keeps) work.push_back(MakeWork(c, images, count, k, v1::DTYPE_F16));
  std::vector<std::function<void()>> runs;
  absl::Status failure;
  uint64_t epoch = 0;
  for (Work& w : work) {
    runs.push_back([&, count] {
      for (int64_t i = 0; i < count; ++i) {
        auto out = bare->Run(w.patches, w.idx, false);
        if (!out.ok()) failure = out.status();
      }
    });
    runs.push_back([&] {
      absl::Status st = Serve(stub.get(), w.requests, &epoch);
      if (!st.ok()) failure = st;
    });
  }
  std::vector<double> secs = TimeInterleaved(runs, static_cast<int>(rounds));
  MKD_RETURN_IF_ERROR(failure);

  std::printf(
      "teacher serving: %s on %s (%s), micro-batch %lld images x %lld per stream, "
      "%d threads (OpenBLAS pinned: %s), fp16 wire, median of %lld rounds\n",
      teacher.c_str(), bare->device().c_str(), dtype.c_str(), static_cast<long long>(images),
      static_cast<long long>(count), rt.intra_op_threads, rt.openblas_pinned ? "yes" : "no",
      static_cast<long long>(rounds));
  std::printf("%-10s %5s %14s %14s %12s %10s\n", "keep", "k", "engine img/s", "server img/s",
              "server/engine", "overhead");
  for (size_t i = 0; i < keeps.size(); ++i) {
    const double e = images * count / secs[2 * i], s = images * count / secs[2 * i + 1];
    std::printf("%-10s %5lld %14.1f %14.1f %11.3fx %9.1f%%\n",
                absl::StrCat(100 * keeps[i] / n, "%").c_str(), static_cast<long long>(keeps[i]), e,
                s, s / e, 100 * (1 - s / e));
  }

  const double full_image = 4.0 * c.in_chans * c.img_size * c.img_size;
  std::printf(
      "\nbytes on the wire per image (whole DistillRequest / b) vs a full fp32 image "
      "(%.0f bytes)\n",
      full_image);
  std::printf("%-10s %12s %10s %12s %10s\n", "keep", "f32 bytes", "ratio", "f16 bytes", "ratio");
  for (int64_t k : keeps) {
    double bytes[2];
    int i = 0;
    for (v1::DType d : {v1::DTYPE_F32, v1::DTYPE_F16}) {
      bytes[i++] =
          static_cast<double>(MakeWork(c, images, 1, k, d).requests[0].ByteSizeLong()) / images;
    }
    std::printf("%-10s %12.0f %9.3fx %12.0f %9.3fx\n", absl::StrCat(100 * k / n, "%").c_str(),
                bytes[0], bytes[0] / full_image, bytes[1], bytes[1] / full_image);
  }
  if (std::optional<int64_t> peak = bare->PeakMemoryBytes()) {
    std::printf("\nteacher engine peak GPU memory: %.0f MiB\n", *peak / 1048576.0);
  }
  server->Shutdown(absl::ZeroDuration());
  return absl::OkStatus();
}

}  // namespace
}  // namespace mkd::bench

int main(int argc, char** argv) {
  return mkd::bench::BenchMain(
      "teacher_server_bench", argc, argv,
      {{"teacher"}, {"images"}, {"count"}, {"rounds"}, {"threads"}, {"device"}, {"dtype"}},
      mkd::bench::Run);
}
