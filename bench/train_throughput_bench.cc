// Training step throughput: no KD vs vanilla KD (teacher on all tokens) vs
// MaskedKD keeping 50% and 25%, each beside its FLOPs-ideal ratio; then
// MaskedKD 50% with the teacher behind gRPC vs in-process, with the step
// split into m pipelined micro-batches. Default: DeiT-Ti student <- DeiT-S
// teacher at 224 on the CPU. The paper's Table 2 setting on a GPU:
//   train_throughput_bench --device cuda --precision bf16 --batch 256 \
//     --student deit_small_patch16_224 --teacher deit_base_patch16_224 --remote process
// --remote in-process runs the server in this process (same cores);
// process starts a separate mkd-teacher (on the same GPU), as a pool would,
// and a second one with `engine: echo` (canned logits at once: the data
// path and the student alone, as with a teacher on hardware of its own);
// none skips the remote variants. Remote variants use shared memory (the
// server is on this host) except "remote grpc", which sends bytes.
// Then every variant's micro-batch stage table, and the pool economics
// (teacher img/s at keep 50% over the student's no-KD img/s). Variants are interleaved per round so
// machine noise hits all alike; each step ends with a device sync.
//
// Usage: train_throughput_bench [--student S] [--teacher T] [--batch 16] [--rounds 3]
//          [--threads N] [--device cpu|cuda] [--precision fp32|bf16|fp16]
//          [--remote in-process|process|none] [--micro 1,4,8] [--bin-dir build/bin]
#include <httplib.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "common/device.h"
#include "common/flags.h"
#include "common/flops.h"
#include "common/runtime.h"
#include "common/status_macros.h"
#include "common/vit_weights.h"
#include "student_worker/trainer.h"
#include "teacher_client/job_teacher.h"
#include "teacher_server/server.h"
#include "tests/process_util.h"

namespace mkd::bench {
namespace {

struct Variant {
  std::string name, mode, criterion;
  double keep;
  std::string address;  // "": the in-process teacher.
  int micro_batches = 1;
  std::string data_plane = "auto";
};

// The teacher server the remote variants talk to: in this process, or a
// separate mkd-teacher. Returns its address.
struct RemoteTeacher {
  std::unique_ptr<teacher::TeacherServer> in_process;
  std::unique_ptr<testing::ChildProcess> process;
  std::string address;
  int metrics_port = 0;
};

absl::StatusOr<RemoteTeacher> StartTeacher(const std::string& how, const std::string& dir,
                                           const ViTConfig& tcfg, const std::string& device,
                                           const std::string& dtype,
                                           const std::string& engine = "torch") {
  RemoteTeacher r;
  if (how == "in-process") {
    teacher::TeacherServerConfig c;
    c.tls.insecure = true;
    c.auth.insecure = true;
    c.model = tcfg;
    c.weights = dir + "/teacher.safetensors";
    c.device = device;
    MKD_ASSIGN_OR_RETURN(c.dtype, ParseFloatTypeName(dtype));
    c.listen = "127.0.0.1:0";
    c.metrics_listen = "";
    MKD_ASSIGN_OR_RETURN(r.in_process, teacher::TeacherServer::Start(c));
    r.address = absl::StrCat("127.0.0.1:", r.in_process->port());
    return r;
  }
  const std::string yaml = dir + "/server_" + engine + ".yaml";
  std::ofstream(yaml) << "model: " << dir << "/teacher.yaml\nweights: " << dir
                      << "/teacher.safetensors\n"
                      << "device: " << device << "\ndtype: " << dtype << "\nengine: " << engine
                      << "\nlisten: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\n"
                      << "tls: {insecure: true}\nauth: {insecure: true}\n";
  r.process = std::make_unique<testing::ChildProcess>(
      "mkd-teacher", std::vector<std::string>{"--config", yaml}, dir + "/teacher_" + engine);
  std::optional<std::string> line = r.process->WaitForLine("serving", std::chrono::seconds(120));
  if (!line) return absl::UnavailableError("mkd-teacher did not start: " + r.process->err());
  r.address = absl::StrCat("127.0.0.1:", testing::NumberAfter(*line, "on port "));
  r.metrics_port = testing::NumberAfter(*line, "metrics port ");
  return r;
}

// mkd_teacher_device_memory_peak_bytes from the separate teacher's /metrics.
double TeacherPeakBytes(int metrics_port) {
  httplib::Client http("127.0.0.1", metrics_port);
  auto res = http.Get("/metrics");
  if (!res) return -1;
  const std::string key = "mkd_teacher_device_memory_peak_bytes ";
  size_t at = res->body.find("\n" + key);
  double v = -1;
  if (at != std::string::npos) {
    size_t end = res->body.find('\n', at + 1);
    (void)absl::SimpleAtod(res->body.substr(at + 1 + key.size(), end - at - 1 - key.size()), &v);
  }
  return v;
}

absl::Status Run(const ParsedFlags& f) {
  const std::string student = f.Get("student").value_or("deit_tiny_patch16_224");
  const std::string teacher = f.Get("teacher").value_or("deit_small_patch16_224");
  const std::string device_name = f.Get("device").value_or("cpu");
  const std::string precision = f.Get("precision").value_or("fp32");
  const std::string remote = f.Get("remote").value_or("in-process");
  MKD_ASSIGN_OR_RETURN(int64_t batch, f.GetInt("batch", 16));
  MKD_ASSIGN_OR_RETURN(int64_t rounds, f.GetInt("rounds", 3));
  MKD_ASSIGN_OR_RETURN(int64_t threads, f.GetInt("threads", 0));
  if (auto bin = f.Get("bin-dir")) setenv("MKD_BIN_DIR", bin->c_str(), 1);
  if (remote != "in-process" && remote != "process" && remote != "none") {
    return absl::InvalidArgumentError("--remote: in-process, process or none");
  }
  std::vector<int> micro;
  for (auto part : absl::StrSplit(f.Get("micro").value_or("1,4,8"), ',')) {
    int m;
    if (!absl::SimpleAtoi(part, &m) || m < 1) return absl::InvalidArgumentError("--micro: bad m");
    micro.push_back(m);
  }
  RuntimeReport rt = ConfigureRuntime(static_cast<int>(threads));
  MKD_ASSIGN_OR_RETURN(torch::Device device, ResolveDevice(device_name, "--device"));

  // Random teacher weights: only the cost matters here.
  std::string dir = std::filesystem::temp_directory_path() / "mkd_train_bench";
  std::filesystem::create_directories(dir);
  MKD_ASSIGN_OR_RETURN(ViTConfig tcfg, ResolveViTConfig(teacher));
  tcfg.num_classes = 10;
  {
    torch::manual_seed(1);
    VisionTransformer t(tcfg);
    MKD_RETURN_IF_ERROR(SaveViTWeights(*t, dir + "/teacher.safetensors"));
  }
  std::ofstream(dir + "/teacher.yaml") << "preset: " << teacher << "\nnum_classes: 10\n";

  std::vector<Variant> variants = {
      {"no KD", "train", "all", 1.0},
      {"vanilla KD", "distill", "all", 1.0},
      {"MaskedKD 50%", "distill", "student_topk", 0.5},
      {"MaskedKD 25%", "distill", "student_topk", 0.25},
  };
  variants.push_back({"in-process m=4", "distill", "student_topk", 0.5, "", 4});
  RemoteTeacher server, echo;
  if (remote != "none") {
    // The server computes in the student's precision, as an in-process
    // teacher on that device does.
    const std::string dtype = device.is_cuda() ? precision : "fp32";
    MKD_ASSIGN_OR_RETURN(server, StartTeacher(remote, dir, tcfg, device_name, dtype));
    // Same host: shared memory (data_plane auto), then gRPC bytes at m = 1.
    for (int m : micro) {
      variants.push_back(
          {absl::StrCat("remote m=", m), "distill", "student_topk", 0.5, server.address, m});
    }
    variants.push_back(
        {"remote grpc m=1", "distill", "student_topk", 0.5, server.address, 1, "grpc"});
    if (remote == "process") {
      // A teacher that answers at once from another process: what is left
      // is the data path and the student (a teacher on hardware of its own).
      MKD_ASSIGN_OR_RETURN(echo, StartTeacher(remote, dir, tcfg, device_name, dtype, "echo"));
      for (int m : {1, 4}) {
        variants.push_back(
            {absl::StrCat("echo m=", m), "distill", "student_topk", 0.5, echo.address, m});
      }
    }
  }
  std::vector<std::unique_ptr<student::Trainer>> trainers;
  for (const Variant& v : variants) {
    MKD_ASSIGN_OR_RETURN(
        student::TrainConfig c,
        student::ParseTrainConfig(
            absl::StrCat("mode: ", v.mode, "\nmodel: {preset: ", student, ", num_classes: 10}\n"),
            {"data.kind=synthetic", "data.dir=3x224x224", absl::StrCat("data.batch_size=", batch),
             "distill.teacher_model=" + dir + "/teacher.yaml",
             "distill.teacher_weights=" + dir + "/teacher.safetensors",
             "distill.criterion=" + v.criterion, absl::StrCat("distill.keep_ratio=", v.keep),
             "distill.teacher_address=" + (v.address.empty() ? "\"\"" : v.address),
             absl::StrCat("distill.micro_batches=", v.micro_batches), "distill.job_id=" + v.name,
             "distill.data_plane=" + v.data_plane, "run.device=" + device_name,
             "run.precision=" + precision, "run.out_dir=" + dir + "/run", "tls.insecure=true"}));
    MKD_ASSIGN_OR_RETURN(auto trainer,
                         student::Trainer::Create(c, nullptr, client::MakeJobTeacher));
    trainers.push_back(std::move(trainer));
  }
  // The batch waits on the device, as the trainer's prefetch leaves it.
  student::Batch b;
  b.images = torch::randn({batch, 3, 224, 224}).to(device);
  b.labels = (torch::arange(batch) % 10).to(device);
  b.targets = torch::one_hot(b.labels, 10).to(torch::kFloat32);
  std::vector<std::function<void()>> runs;
  absl::Status failure;
  // Each variant's micro-batch stages, over the timed rounds (the first
  // call, the warm-up, is left out).
  std::vector<std::vector<StageSeconds>> stages(trainers.size());
  std::vector<int> calls(trainers.size(), 0);
  for (size_t i = 0; i < trainers.size(); ++i) {
    runs.push_back([&, i] {
      auto r = trainers[i]->RunStep(b);
      if (!r.ok()) failure = r.status();
      if (r.ok() && calls[i]++ > 0) {
        stages[i].insert(stages[i].end(), r->stages.begin(), r->stages.end());
      }
    });
  }
  std::vector<double> secs = TimeInterleaved(runs, static_cast<int>(rounds));
  MKD_RETURN_IF_ERROR(failure);

  MKD_ASSIGN_OR_RETURN(ViTConfig scfg, ResolveViTConfig(student));
  // Training costs ~3x a forward pass (forward + backward); the teacher
  // only runs forward.
  const double s = 3 * ViTForwardFlops(scfg, scfg.num_patches());
  auto teacher_cost = [&](double keep) {
    return ViTForwardFlops(tcfg, static_cast<int64_t>(std::llround(keep * tcfg.num_patches())));
  };
  const double cost[] = {s, s + teacher_cost(1.0), s + teacher_cost(0.5), s + teacher_cost(0.25)};
  std::printf(
      "train step throughput: student %s, teacher %s, batch %lld, device %s, %s, "
      "%d threads (OpenBLAS pinned: %s), median of %lld rounds\n",
      student.c_str(), teacher.c_str(), static_cast<long long>(batch), device.str().c_str(),
      precision.c_str(), rt.intra_op_threads, rt.openblas_pinned ? "yes" : "no",
      static_cast<long long>(rounds));
  std::printf("%-14s %10s %12s %16s %16s\n", "variant", "img/s", "GFLOP/img", "vs vanilla KD",
              "ideal vs vanilla");
  for (size_t i = 0; i < 4; ++i) {
    std::printf("%-14s %10.1f %12.2f %15.2fx %15.2fx\n", variants[i].name.c_str(), batch / secs[i],
                cost[i] / 1e9, secs[1] / secs[i], cost[1] / cost[i]);
  }
  std::printf(
      "\nMaskedKD 50%%, teacher behind a server on this host (fp16 kept patches; shared memory "
      "unless named grpc; server %s)\n"
      "%-16s %10s %16s %16s\n",
      remote == "process" ? "a separate mkd-teacher process" : "in this process", "variant",
      "img/s", "vs in-process", "vs no KD");
  for (size_t i = 2; i < variants.size(); ++i) {
    if (i == 3) continue;
    std::printf("%-16s %10.1f %15.2fx %15.2fx\n", i == 2 ? "in-process" : variants[i].name.c_str(),
                batch / secs[i], secs[2] / secs[i], secs[0] / secs[i]);
  }
  // Pool economics: how many such students one teacher keeps fed at keep
  // 50%: the teacher's forward throughput (the in-process MaskedKD 50%
  // run's teacher stage, batch B) over the student's plain training.
  const StageMeans masked = MeanOverMicroBatches(stages[2]);
  if (masked.mean.has(Stage::kTeacherForward) && masked.mean.get(Stage::kTeacherForward) > 0) {
    const double teacher_ips = batch / masked.mean.get(Stage::kTeacherForward);
    std::printf(
        "\npool economics at keep 50%%: teacher %.1f img/s, student (no KD) %.1f img/s: one "
        "teacher feeds %.2f students\n",
        teacher_ips, batch / secs[0], teacher_ips / (batch / secs[0]));
  }
  {
    std::vector<std::string> names;
    std::vector<std::vector<StageSeconds>> distilled;
    for (size_t i = 1; i < variants.size(); ++i) {
      names.push_back(variants[i].name);
      distilled.push_back(stages[i]);
    }
    std::printf("\nper micro-batch stages (%s)\n",
                device.is_cuda() ? "device stages by CUDA events" : "steady clock");
    PrintStageTable(names, distilled);
  }
  if (device.is_cuda()) {
    // Peak memory of one step per variant, above what every trainer keeps
    // resident (all the variants' models and optimizer states share the GPU).
    std::printf("\npeak GPU memory of one step (this process; MiB): resident %.0f\n",
                *CurrentDeviceMemory(device) / 1048576.0);
    for (size_t i = 0; i < variants.size(); ++i) {
      const int64_t before = *CurrentDeviceMemory(device);
      ResetPeakDeviceMemory(device);
      runs[i]();
      std::printf("  %-14s +%.0f\n", variants[i].name.c_str(),
                  (*PeakDeviceMemory(device) - before) / 1048576.0);
    }
    if (server.process) {
      std::printf("teacher process peak GPU memory (its /metrics): %.0f MiB\n",
                  TeacherPeakBytes(server.metrics_port) / 1048576.0);
    }
  }
  trainers.clear();
  for (RemoteTeacher* t : {&server, &echo}) {
    if (t->process) {
      t->process->Signal(SIGTERM);
      t->process->Wait();
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace mkd::bench

int main(int argc, char** argv) {
  return mkd::bench::BenchMain("train_throughput_bench", argc, argv,
                               {{"student"},
                                {"teacher"},
                                {"batch"},
                                {"rounds"},
                                {"threads"},
                                {"device"},
                                {"precision"},
                                {"remote"},
                                {"micro"},
                                {"bin-dir"}},
                               mkd::bench::Run);
}
