// Masked vs full teacher forward: img/s of a ViT at several keep ratios,
// the measured speedup over the full forward and the FLOPs-ideal speedup,
// all measured side by side in one run (variants interleaved per round).
//
// On CUDA (--device cuda) it first checks the device's fp32 logits, full
// and kept, against the CPU's, and times with a device synchronise.
//
// Usage: masked_forward_bench [--models a,b] [--batch 32] [--threads N]
//                             [--rounds 5] [--keep 1,0.75,0.5,0.25]
//                             [--device cpu|cuda] [--dtype fp32|fp16|bf16]
#include <torch/torch.h>

#include <cstdio>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "common/flags.h"
#include "common/flops.h"
#include "common/masking.h"
#include "common/runtime.h"
#include "common/status_macros.h"
#include "common/vit.h"

namespace mkd::bench {
namespace {

struct Options {
  std::vector<std::string> models = {"deit_small_patch16_224", "deit_tiny_patch16_224"};
  std::vector<double> keep = {1.0, 0.75, 0.5, 0.25};
  int64_t batch = 32;
  int64_t threads = std::thread::hardware_concurrency();
  int64_t rounds = 5;
  std::string device = "cpu";
  std::string dtype = "fp32";
};

torch::Dtype ParseDtype(const std::string& name) {
  if (name == "fp16") return torch::kFloat16;
  if (name == "bf16") return torch::kBFloat16;
  return torch::kFloat32;
}

// Max |CUDA - CPU| over fp32 logits of a small batch, full and kept.
absl::StatusOr<double> CudaParity(VisionTransformer& model, const ViTConfig& config) {
  torch::Tensor x = torch::randn({4, config.in_chans, config.img_size, config.img_size});
  auto gen = at::detail::createCPUGenerator(2);
  torch::Tensor idx = SelectPatches(torch::zeros({4, config.num_patches()}),
                                    config.num_patches() / 2, MaskCriterion::kRandom, gen);
  model->to(torch::kCPU, torch::kFloat32);
  torch::Tensor full_cpu = model->Forward(x).logits, kept_cpu = model->ForwardKept(x, idx).logits;
  model->to(torch::kCUDA);
  torch::Tensor full = model->Forward(x.cuda()).logits.cpu();
  torch::Tensor kept = model->ForwardKept(x.cuda(), idx.cuda()).logits.cpu();
  return std::max((full - full_cpu).abs().max().item<double>(),
                  (kept - kept_cpu).abs().max().item<double>());
}

absl::StatusOr<Options> Parse(int argc, char** argv) {
  MKD_ASSIGN_OR_RETURN(
      ParsedFlags f,
      ParseFlags(
          std::vector<std::string>(argv + 1, argv + argc),
          {{"models"}, {"batch"}, {"threads"}, {"rounds"}, {"keep"}, {"device"}, {"dtype"}}));
  Options o;
  if (auto m = f.Get("models")) o.models = absl::StrSplit(*m, ',');
  if (auto k = f.Get("keep")) {
    o.keep.clear();
    for (auto part : absl::StrSplit(*k, ',')) {
      double v;
      if (!absl::SimpleAtod(part, &v)) return absl::InvalidArgumentError("bad --keep value");
      o.keep.push_back(v);
    }
  }
  MKD_ASSIGN_OR_RETURN(o.batch, f.GetInt("batch", o.batch));
  MKD_ASSIGN_OR_RETURN(o.threads, f.GetInt("threads", o.threads));
  MKD_ASSIGN_OR_RETURN(o.rounds, f.GetInt("rounds", o.rounds));
  o.device = f.Get("device").value_or(o.device);
  o.dtype = f.Get("dtype").value_or(o.dtype);
  if (o.device != "cpu" && o.device != "cuda")
    return absl::InvalidArgumentError("--device: cpu or cuda");
  if (o.dtype != "fp32" && o.dtype != "fp16" && o.dtype != "bf16") {
    return absl::InvalidArgumentError("--dtype: fp32, fp16 or bf16");
  }
  if (o.device == "cuda" && !torch::cuda::is_available()) {
    return absl::FailedPreconditionError("--device cuda: no CUDA device");
  }
  return o;
}

absl::Status BenchModel(const std::string& name, const Options& o) {
  MKD_ASSIGN_OR_RETURN(ViTConfig config, ViTPreset(name));
  torch::manual_seed(0);
  VisionTransformer model(config);
  model->eval();
  torch::NoGradGuard no_grad;
  const bool cuda = o.device == "cuda";
  if (cuda) {
    MKD_ASSIGN_OR_RETURN(double diff, CudaParity(model, config));
    std::printf("%s: CUDA vs CPU fp32 logits, max |diff| %.2e\n", name.c_str(), diff);
    if (!(diff < 1e-3)) return absl::InternalError("CUDA logits differ from the CPU's");
  }
  const torch::Device device(cuda ? torch::kCUDA : torch::kCPU);
  const torch::Dtype dtype = ParseDtype(o.dtype);
  model->to(device, dtype);
  torch::Tensor images =
      torch::randn({o.batch, config.in_chans, config.img_size, config.img_size}).to(device, dtype);
  const int64_t n = config.num_patches();
  // Kernel launches are asynchronous: a variant ends when the device is done.
  auto sync = [cuda] {
    if (cuda) torch::cuda::synchronize();
  };

  std::vector<int64_t> ks;
  std::vector<std::function<void()>> variants;
  variants.push_back([&] {  // The full forward: the baseline.
    model->Forward(images);
    sync();
  });
  ks.push_back(n);
  auto gen = at::detail::createCPUGenerator(1);
  for (double ratio : o.keep) {
    MKD_ASSIGN_OR_RETURN(int64_t k, KeepCount(ratio, n));
    torch::Tensor idx =
        SelectPatches(torch::zeros({o.batch, n}), k, MaskCriterion::kRandom, gen).to(device);
    ks.push_back(k);
    variants.push_back([&model, &images, idx, sync] {
      model->ForwardKept(images, idx);
      sync();
    });
  }
  std::vector<double> secs = TimeInterleaved(variants, static_cast<int>(o.rounds));

  const double full_flops = ViTForwardFlops(config, n);
  std::printf("\n%s  batch %lld, %s %s, %d threads, median of %lld rounds\n", name.c_str(),
              static_cast<long long>(o.batch), o.device.c_str(), o.dtype.c_str(),
              torch::get_num_threads(), static_cast<long long>(o.rounds));
  std::printf("%-10s %6s %10s %10s %10s %10s %11s\n", "variant", "k", "GFLOP/img", "img/s",
              "speedup", "ideal", "efficiency");
  for (size_t i = 0; i < variants.size(); ++i) {
    double flops = ViTForwardFlops(config, ks[i]);
    double speedup = secs[0] / secs[i];
    double ideal = full_flops / flops;
    std::string label =
        i == 0 ? "full"
               : "keep " + std::to_string(static_cast<int>(o.keep[i - 1] * 100 + 0.5)) + "%";
    std::printf("%-10s %6lld %10.3f %10.1f %9.2fx %9.2fx %10.2f\n", label.c_str(),
                static_cast<long long>(ks[i]), flops / 1e9, o.batch / secs[i], speedup, ideal,
                speedup / ideal);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace mkd::bench

int main(int argc, char** argv) {
  auto options = mkd::bench::Parse(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "masked_forward_bench: error: %s\n",
                 std::string(options.status().message()).c_str());
    return 2;
  }
  mkd::RuntimeReport rt = mkd::ConfigureRuntime(static_cast<int>(options->threads));
  std::printf("masked vs full ViT forward (LibTorch %s, %s, OpenBLAS pinned: %s)\n", TORCH_VERSION,
              options->device.c_str(), rt.openblas_pinned ? "yes" : "no");
  for (const auto& model : options->models) {
    absl::Status st;
    try {
      st = mkd::bench::BenchModel(model, *options);
    } catch (const std::exception& e) {
      st = absl::InternalError(e.what());
    }
    if (!st.ok()) {
      std::fprintf(stderr, "masked_forward_bench: %s: %s\n", model.c_str(),
                   std::string(st.message()).c_str());
      return 1;
    }
  }
  return 0;
}
