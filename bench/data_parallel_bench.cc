// What data parallelism costs per step: the gradient all-reduce of a whole
// model (DeiT-Ti, DeiT-S) between 2 ranks over Gloo on loopback, bucketed
// as the trainer does it, against the same model's forward + backward of a
// batch on one rank, measured side by side in one run.
//
// The 2 ranks are 2 threads of this process, each with its own process
// group and TCP connections (the transport is the real one; only the
// processes are shared). Both share this machine's cores with nothing else.
//
//   data_parallel_bench [--models deit_tiny_patch16_224,deit_small_patch16_224]
//                       [--batch 8] [--rounds 5] [--port 29650]
#include <torch/torch.h>

#include <cstdio>
#include <thread>

#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "common/runtime.h"
#include "common/status_macros.h"
#include "common/vit.h"
#include "student_worker/data_parallel.h"

namespace mkd::bench {
namespace {

struct Options {
  std::vector<std::string> models = {"deit_tiny_patch16_224", "deit_small_patch16_224"};
  int64_t batch = 8;
  int64_t rounds = 5;
  int64_t port = 29650;
};

absl::StatusOr<Options> FromFlags(const ParsedFlags& f) {
  Options o;
  if (auto m = f.Get("models")) o.models = absl::StrSplit(*m, ',');
  MKD_ASSIGN_OR_RETURN(o.batch, f.GetInt("batch", o.batch));
  MKD_ASSIGN_OR_RETURN(o.rounds, f.GetInt("rounds", o.rounds));
  MKD_ASSIGN_OR_RETURN(o.port, f.GetInt("port", o.port));
  return o;
}

// Median seconds of one all-reduce of every gradient of `config`'s model,
// 2 ranks as 2 threads.
absl::StatusOr<double> AllReduceSeconds(const ViTConfig& config, int port, int rounds) {
  std::vector<double> seconds[2];
  absl::Status failed[2];
  auto rank_main = [&](int rank) {
    student::DataParallelOptions o;
    o.rank = rank;
    o.world_size = 2;
    o.master_port = port;
    auto dp = student::DataParallel::Connect(o);
    if (!dp.ok()) {
      failed[rank] = dp.status();
      return;
    }
    torch::manual_seed(rank);
    VisionTransformer model(config);
    std::vector<torch::Tensor> params = model->parameters();
    for (torch::Tensor& p : params) p.mutable_grad() = torch::randn_like(p);
    (*dp)->Attach(params);
    for (int r = 0; r <= rounds; ++r) {  // Round 0 warms up.
      const double s = Seconds([&] { failed[rank].Update((*dp)->AverageGradients()); });
      if (r > 0) seconds[rank].push_back(s);
    }
  };
  std::thread other(rank_main, 1);
  rank_main(0);
  other.join();
  MKD_RETURN_IF_ERROR(failed[0]);
  MKD_RETURN_IF_ERROR(failed[1]);
  return Median(seconds[0]);
}

absl::Status BenchModel(const std::string& name, const Options& o, int port) {
  MKD_ASSIGN_OR_RETURN(ViTConfig config, ViTPreset(name));
  VisionTransformer model(config);
  int64_t params = 0;
  for (const torch::Tensor& p : model->parameters()) params += p.numel();
  torch::Tensor x = torch::randn({o.batch, config.in_chans, config.img_size, config.img_size});
  const std::vector<double> step = TimeInterleaved({[&] {
                                                     model->zero_grad();
                                                     model->forward(x).sum().backward();
                                                   }},
                                                   static_cast<int>(o.rounds));
  MKD_ASSIGN_OR_RETURN(double reduce, AllReduceSeconds(config, port, static_cast<int>(o.rounds)));
  std::printf(
      "%-24s %6.1fM params (%5.1f MB of fp32 gradients): all-reduce, 2 ranks %8.1f ms | "
      "forward+backward of %lld images on 1 rank %8.1f ms | ratio %.3f\n",
      name.c_str(), params / 1e6, params * 4 / 1e6, reduce * 1e3, static_cast<long long>(o.batch),
      step[0] * 1e3, reduce / step[0]);
  return absl::OkStatus();
}

}  // namespace
}  // namespace mkd::bench

int main(int argc, char** argv) {
  return mkd::bench::BenchMain(
      "data_parallel_bench", argc, argv, {{"models"}, {"batch"}, {"rounds"}, {"port"}},
      [](const mkd::ParsedFlags& flags) -> absl::Status {
        MKD_ASSIGN_OR_RETURN(mkd::bench::Options o, mkd::bench::FromFlags(flags));
        mkd::ConfigureRuntime(0);
        std::printf("gradient all-reduce vs compute (LibTorch %s, Gloo on loopback, %u cores)\n",
                    TORCH_VERSION, std::thread::hardware_concurrency());
        int port = static_cast<int>(o.port);
        for (const auto& model : o.models) {
          MKD_RETURN_IF_ERROR(mkd::bench::BenchModel(model, o, port++));
        }
        return absl::OkStatus();
      });
}
