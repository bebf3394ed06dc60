// What data parallelism costs per step, for DeiT-Ti and DeiT-S between 2
// ranks over Gloo on loopback, measured side by side in one run: the
// bucketed gradient all-reduce alone; and a step's forward + backward +
// averaging with the all-reduce started by the hooks during the backward
// (as the trainer runs it) against started after the backward.
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
#include "common/thread.h"
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

// 2 ranks as 2 threads, each with its own copy of `config`'s model: runs
// every variant once per round (interleaved, so noise hits all alike; round
// 0 warms up) and returns rank 0's median seconds per variant.
using Variant = std::function<absl::Status(student::DataParallel&, VisionTransformer&)>;
absl::StatusOr<std::vector<double>> TimeOnTwoRanks(const ViTConfig& config, int port, int rounds,
                                                   const std::vector<Variant>& variants) {
  std::vector<std::vector<double>> seconds(variants.size());
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
    VisionTransformer model(config);
    (*dp)->Attach(model->parameters());
    for (int r = 0; r <= rounds && failed[rank].ok(); ++r) {
      for (size_t v = 0; v < variants.size(); ++v) {
        const double s = Seconds([&] { failed[rank].Update(variants[v](**dp, model)); });
        if (r > 0 && rank == 0) seconds[v].push_back(s);
      }
    }
  };
  Thread other("mkd-rank-1", [&] { rank_main(1); });
  rank_main(0);
  MKD_RETURN_IF_ERROR(other.Join());  // What rank 1 threw, if anything.
  MKD_RETURN_IF_ERROR(failed[0]);
  MKD_RETURN_IF_ERROR(failed[1]);
  std::vector<double> medians;
  for (auto& v : seconds) medians.push_back(Median(v));
  return medians;
}

absl::Status BenchModel(const std::string& name, const Options& o, int port) {
  MKD_ASSIGN_OR_RETURN(ViTConfig config, ViTPreset(name));
  int64_t params = 0;
  for (const torch::Tensor& p : VisionTransformer(config)->parameters()) params += p.numel();
  const torch::Tensor x =
      torch::randn({o.batch, config.in_chans, config.img_size, config.img_size});
  // A training step's gradient work: forward + backward, then averaging,
  // with the hooks starting buckets during the backward or not.
  auto step = [&x](bool hooks) -> Variant {
    return [&x, hooks](student::DataParallel& dp, VisionTransformer& model) {
      model->zero_grad();
      if (hooks) dp.ArmHooks();
      model->forward(x).sum().backward();
      return dp.AverageGradients();
    };
  };
  const Variant reduce_only = [](student::DataParallel& dp, VisionTransformer&) {
    return dp.AverageGradients();  // The gradients the last step left.
  };
  // One intra-op thread per rank: the 2 ranks share the cores as 2
  // processes would.
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  auto t = TimeOnTwoRanks(config, port, static_cast<int>(o.rounds),
                          {step(true), step(false), reduce_only});
  at::set_num_threads(threads);
  if (!t.ok()) return t.status();
  const double hooked = (*t)[0], after = (*t)[1], reduce = (*t)[2];
  std::printf(
      "%-24s %5.1fM params (%5.1f MB fp32 gradients), batch %lld per rank:\n"
      "    all-reduce alone %7.1f ms | step with it overlapped %7.1f ms, after the backward "
      "%7.1f ms | all-reduce / step %.3f, overlap saves %.1f%%\n",
      name.c_str(), params / 1e6, params * 4 / 1e6, static_cast<long long>(o.batch), reduce * 1e3,
      hooked * 1e3, after * 1e3, reduce / after, 100 * (1 - hooked / after));
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
