// Training step throughput, in process: no KD vs vanilla KD (teacher on all
// tokens) vs MaskedKD (teacher on the kept 50%), default DeiT-Ti student <-
// DeiT-S teacher at 224 on CPU, each printed beside its FLOPs-ideal ratio.
// Then MaskedKD 50% with the teacher behind gRPC (an mkd-teacher server on
// loopback, in this process, sharing its cores) vs in-process, with the
// step split into m = 1, 4, 8 pipelined micro-batches.
// Variants are interleaved per round so machine noise hits all alike.
//
// Usage: train_throughput_bench [--student deit_tiny_patch16_224]
//          [--teacher deit_small_patch16_224] [--batch 16] [--rounds 3] [--threads N]
#include <cstdio>
#include <filesystem>

#include <torch/torch.h>

#include "bench/bench_util.h"
#include "common/flags.h"
#include "common/flops.h"
#include "common/runtime.h"
#include "common/status_macros.h"
#include "common/vit_weights.h"
#include "student_worker/trainer.h"
#include "teacher_server/server.h"

namespace mkd::bench {
namespace {

struct Variant {
  std::string name;
  std::string mode;
  std::string criterion;
  double keep;
  bool remote = false;
  int micro_batches = 1;
};

absl::Status Run(const ParsedFlags& f) {
  const std::string student = f.Get("student").value_or("deit_tiny_patch16_224");
  const std::string teacher = f.Get("teacher").value_or("deit_small_patch16_224");
  MKD_ASSIGN_OR_RETURN(int64_t batch, f.GetInt("batch", 16));
  MKD_ASSIGN_OR_RETURN(int64_t rounds, f.GetInt("rounds", 3));
  MKD_ASSIGN_OR_RETURN(int64_t threads, f.GetInt("threads", 0));
  RuntimeReport rt = ConfigureRuntime(static_cast<int>(threads));

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
  std::FILE* yaml = std::fopen((dir + "/teacher.yaml").c_str(), "w");
  std::fprintf(yaml, "preset: %s\nnum_classes: 10\n", teacher.c_str());
  std::fclose(yaml);

  const std::vector<Variant> variants = {
      {"no KD", "train", "all", 1.0},
      {"vanilla KD", "distill", "all", 1.0},
      {"MaskedKD 50%", "distill", "student_topk", 0.5},
      {"in-process m=4", "distill", "student_topk", 0.5, false, 4},
      {"remote m=1", "distill", "student_topk", 0.5, true, 1},
      {"remote m=4", "distill", "student_topk", 0.5, true, 4},
      {"remote m=8", "distill", "student_topk", 0.5, true, 8},
  };
  teacher::TeacherServerConfig server_config;
  server_config.model = tcfg;
  server_config.weights = dir + "/teacher.safetensors";
  server_config.listen = "127.0.0.1:0";
  server_config.metrics_listen = "";
  MKD_ASSIGN_OR_RETURN(auto server, teacher::TeacherServer::Start(server_config));
  const std::string address = absl::StrCat("127.0.0.1:", server->port());
  std::vector<std::unique_ptr<student::Trainer>> trainers;
  std::vector<student::Batch> batches;
  for (const Variant& v : variants) {
    MKD_ASSIGN_OR_RETURN(
        student::TrainConfig c,
        student::ParseTrainConfig(
            absl::StrCat("mode: ", v.mode, "\nmodel: {preset: ", student, ", num_classes: 10}\n"),
            {"data.kind=synthetic", "data.dir=3x224x224", absl::StrCat("data.batch_size=", batch),
             "distill.teacher_model=" + dir + "/teacher.yaml",
             "distill.teacher_weights=" + dir + "/teacher.safetensors",
             "distill.criterion=" + v.criterion, absl::StrCat("distill.keep_ratio=", v.keep),
             "distill.teacher_address=" + (v.remote ? address : "\"\""),
             absl::StrCat("distill.micro_batches=", v.micro_batches),
             "distill.job_id=" + v.name, "run.out_dir=" + dir + "/run"}));
    MKD_ASSIGN_OR_RETURN(auto trainer, student::Trainer::Create(c));
    trainers.push_back(std::move(trainer));
  }
  student::Batch b;
  b.images = torch::randn({batch, 3, 224, 224});
  b.labels = torch::arange(batch) % 10;
  b.targets = torch::one_hot(b.labels, 10).to(torch::kFloat32);
  std::vector<std::function<void()>> runs;
  absl::Status failure;
  for (auto& t : trainers) {
    runs.push_back([&t, &b, &failure] {
      auto r = t->Step(b);
      if (!r.ok()) failure = r.status();
    });
  }
  std::vector<double> secs = TimeInterleaved(runs, static_cast<int>(rounds));
  MKD_RETURN_IF_ERROR(failure);

  MKD_ASSIGN_OR_RETURN(ViTConfig scfg, ResolveViTConfig(student));
  // Training costs ~3x a forward pass (forward + backward); the teacher
  // only runs forward.
  const double s = 3 * ViTForwardFlops(scfg, scfg.num_patches());
  const double t_full = ViTForwardFlops(tcfg, tcfg.num_patches());
  const double t_half = ViTForwardFlops(tcfg, tcfg.num_patches() / 2);
  const double cost[] = {s, s + t_full, s + t_half};
  std::printf("train step throughput: student %s, teacher %s, batch %lld, %d threads "
              "(OpenBLAS pinned: %s), median of %lld rounds\n",
              student.c_str(), teacher.c_str(), static_cast<long long>(batch),
              rt.intra_op_threads, rt.openblas_pinned ? "yes" : "no", static_cast<long long>(rounds));
  std::printf("%-14s %10s %12s %16s %16s\n", "variant", "img/s", "GFLOP/img", "vs vanilla KD",
              "ideal vs vanilla");
  for (size_t i = 0; i < 3; ++i) {
    std::printf("%-14s %10.2f %12.2f %15.2fx %15.2fx\n", variants[i].name.c_str(), batch / secs[i],
                cost[i] / 1e9, secs[1] / secs[i], cost[1] / cost[i]);
  }
  std::printf("\nMaskedKD 50%%, teacher over gRPC on loopback (fp16 kept patches; server in this "
              "process, same cores)\n%-14s %10s %16s %14s\n", "variant", "img/s",
              "vs in-process", "vs remote m=1");
  for (size_t i = 2; i < variants.size(); ++i) {
    std::printf("%-14s %10.2f %15.2fx %13.2fx\n", i == 2 ? "in-process" : variants[i].name.c_str(),
                batch / secs[i], secs[2] / secs[i], secs[4] / secs[i]);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace mkd::bench

int main(int argc, char** argv) {
  return mkd::bench::BenchMain("train_throughput_bench", argc, argv,
                               {{"student"}, {"teacher"}, {"batch"}, {"rounds"}, {"threads"}},
                               mkd::bench::Run);
}
