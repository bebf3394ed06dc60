// The data planes side by side: micro-batches of kept patches to an
// mkd-teacher in another process on this host, over shared memory and over
// gRPC bytes, interleaved per round. The teacher runs `engine: echo` (zero
// logits at once), so what is timed is the data path alone: the copy to
// the host, encoding, the transport both ways, the server's decode and
// answer. Default geometry: DeiT-B at 224 (768-wide patches of 16x16x3),
// 64 images, keep 50%, fp16 on the wire: 9.6 MB a micro-batch.
//
// Prints, per plane: one micro-batch at a time (latency) and `count` in
// flight at once (throughput), their ratio shm / gRPC, and the stages of
// the path (common/micro_batch_stages.h).
//
// Usage: data_plane_bench [--teacher deit_base_patch16_224] [--images 64]
//          [--keep 0.5] [--count 16] [--rounds 5] [--bin-dir build/bin]
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "common/masking.h"
#include "common/runtime.h"
#include "common/status_macros.h"
#include "teacher_client/remote_teacher.h"
#include "tests/process_util.h"

namespace mkd::bench {
namespace {

struct Plane {
  std::string name;
  DataPlaneKind kind;
  std::unique_ptr<client::Teacher> teacher;
  std::vector<double> latency_s, throughput_s;
  std::vector<StageSeconds> stages;
};

absl::Status Run(const ParsedFlags& f) {
  const std::string model = f.Get("teacher").value_or("deit_base_patch16_224");
  MKD_ASSIGN_OR_RETURN(int64_t images, f.GetInt("images", 64));
  MKD_ASSIGN_OR_RETURN(int64_t count, f.GetInt("count", 16));
  MKD_ASSIGN_OR_RETURN(int64_t rounds, f.GetInt("rounds", 5));
  double keep = 0.5;
  if (auto k = f.Get("keep"); k && (!absl::SimpleAtod(*k, &keep) || keep <= 0 || keep > 1)) {
    return absl::InvalidArgumentError("--keep: a ratio in (0, 1]");
  }
  if (auto bin = f.Get("bin-dir")) setenv("MKD_BIN_DIR", bin->c_str(), 1);
  ConfigureRuntime(0);
  MKD_ASSIGN_OR_RETURN(ViTConfig cfg, ResolveViTConfig(model));
  const std::string dir = std::filesystem::temp_directory_path() / "mkd_data_plane_bench";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/server.yaml")
      << "model: " << model << "\nweights: unused-by-echo\nengine: echo\n"
      << "listen: 127.0.0.1:0\nmetrics_listen: \"\"\nmax_micro_batch_images: " << images
      << "\nmax_message_bytes: " << (256 << 20)
      << "\ntls: {insecure: true}\nauth: {insecure: true}\n";
  testing::ChildProcess server("mkd-teacher", {"--config", dir + "/server.yaml"}, dir + "/teacher");
  std::optional<std::string> line = server.WaitForLine("serving", std::chrono::seconds(60));
  if (!line) return absl::UnavailableError("mkd-teacher did not start: " + server.err());
  const std::string address = absl::StrCat("127.0.0.1:", testing::NumberAfter(*line, "on port "));

  std::vector<Plane> planes;
  planes.push_back({"shm", DataPlaneKind::kShm});
  planes.push_back({"grpc", DataPlaneKind::kGrpc});
  for (Plane& p : planes) {
    client::RemoteTeacherOptions o;
    o.address = address;
    o.tls.insecure = true;
    o.job_id = "bench-" + p.name;
    o.data_plane = p.kind;
    o.shm_region_bytes = int64_t{1} << 30;  // `count` micro-batches in flight.
    MKD_ASSIGN_OR_RETURN(p.teacher, client::MakeRemoteTeacher(o));
  }
  const int64_t k = std::max<int64_t>(1, std::llround(keep * cfg.num_patches()));
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({images, cfg.in_chans, cfg.img_size, cfg.img_size});
  const torch::Tensor idx =
      torch::rand({images, cfg.num_patches()}).argsort(1, false).narrow(1, 0, k).contiguous();
  auto once = [&](Plane& p, bool keep_stages) -> absl::Status {
    client::PendingLogits pending;
    // The caller's own part: cutting the kept patches into host memory.
    const double submit_s = Seconds([&] { pending = p.teacher->SubmitLogits(x, idx); });
    MKD_ASSIGN_OR_RETURN(client::TeacherAnswer a, client::AwaitAnswer(pending, absl::Seconds(60)));
    a.stages.Set(Stage::kDeviceToHost, submit_s);
    if (keep_stages) p.stages.push_back(a.stages);
    return absl::OkStatus();
  };
  auto many = [&](Plane& p) -> absl::Status {
    std::vector<client::PendingLogits> pending;
    for (int64_t i = 0; i < count; ++i) pending.push_back(p.teacher->SubmitLogits(x, idx));
    for (auto& one : pending) {
      MKD_RETURN_IF_ERROR(client::AwaitAnswer(one, absl::Seconds(60)).status());
    }
    return absl::OkStatus();
  };
  for (Plane& p : planes) {  // Warm-up: connections, regions, allocators.
    MKD_RETURN_IF_ERROR(once(p, false));
    MKD_RETURN_IF_ERROR(many(p));
  }
  for (int64_t r = 0; r < rounds; ++r) {
    for (Plane& p : planes) {
      absl::Status st;
      p.latency_s.push_back(Seconds([&] {
                              for (int64_t i = 0; i < count && st.ok(); ++i) st = once(p, true);
                            }) /
                            count);
      MKD_RETURN_IF_ERROR(st);
      p.throughput_s.push_back(Seconds([&] { st = many(p); }) / count);
      MKD_RETURN_IF_ERROR(st);
    }
  }
  const double mb_bytes = static_cast<double>(images * k * cfg.patch_dim() * 2);
  std::printf(
      "data planes to an echo mkd-teacher on this host: %s geometry, %lld images, k = %lld of "
      "%lld, fp16: %.1f MB a micro-batch; medians of %lld rounds\n",
      model.c_str(), static_cast<long long>(images), static_cast<long long>(k),
      static_cast<long long>(cfg.num_patches()), mb_bytes / 1e6, static_cast<long long>(rounds));
  std::printf("%-6s %16s %13lld in flight %14s\n", "plane", "one at a time",
              static_cast<long long>(count), "GB/s in flight");
  for (Plane& p : planes) {
    std::printf("%-6s %13.2f ms %13.2f ms %14.2f\n", p.name.c_str(), 1e3 * Median(p.latency_s),
                1e3 * Median(p.throughput_s), mb_bytes / Median(p.throughput_s) / 1e9);
  }
  std::printf("shm / gRPC: latency %.2fx, throughput %.2fx\n",
              Median(planes[1].latency_s) / Median(planes[0].latency_s),
              Median(planes[1].throughput_s) / Median(planes[0].throughput_s));
  std::printf("\nper micro-batch stages, one at a time\n");
  PrintStageTable({"shm", "grpc"}, {planes[0].stages, planes[1].stages});
  planes.clear();
  server.Signal(SIGTERM);
  server.Wait();
  return absl::OkStatus();
}

}  // namespace
}  // namespace mkd::bench

int main(int argc, char** argv) {
  return mkd::bench::BenchMain(
      "data_plane_bench", argc, argv,
      {{"teacher"}, {"images"}, {"keep"}, {"count"}, {"rounds"}, {"bin-dir"}}, mkd::bench::Run);
}
