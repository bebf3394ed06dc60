#include "cli/predict.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/npy.h"
#include "common/runtime.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "common/vit.h"
#include "common/vit_weights.h"

namespace mkd::cli {
namespace {

const std::vector<FlagSpec>& Specs() {
  static const auto* specs = new std::vector<FlagSpec>{
      {"model", true, "preset name (e.g. deit_small_patch16_224) or model .yaml"},
      {"weights", true, "weights (.safetensors, timm keys)"},
      {"images", true, "float32 [B,C,H,W] .npy, already normalised"},
      {"keep", true, "int64 [B,k] .npy of kept patch indices (teacher forward)"},
      {"num-classes", true, "override the model's number of classes"},
      {"out", true, "output float32 [B,classes] .npy"},
      {"saliency-out", true, "also write the CLS saliency, float32 [B,N] .npy"},
      {"threads", true, "intra-op threads (default: one per core)"},
      {"batch-size", true, "images per forward pass (default 64)"},
  };
  return *specs;
}

// Reads an .npy of the given dtype as a tensor; errors name the flag.
absl::StatusOr<torch::Tensor> LoadArray(const std::string& path, DType want,
                                        const std::string& flag) {
  auto array = ReadNpy(path);
  if (!array.ok()) return Annotate(array.status(), absl::StrCat("--", flag));
  if (array->dtype != want) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", path, ": dtype must be ",
                                                   DTypeName(want), ", not ",
                                                   DTypeName(array->dtype)));
  }
  return ToTensor(*array);
}

absl::Status WriteTensor(const std::string& path, const torch::Tensor& t) {
  MKD_ASSIGN_OR_RETURN(HostArray array, FromTensor(t.to(torch::kFloat32)));
  return WriteNpy(path, array);
}

}  // namespace

std::string PredictUsage() {
  return absl::StrCat(
      "usage: mkd predict --model M --weights W --images X.npy --out Y.npy [options]\n",
      FlagsUsage(Specs()));
}

absl::StatusOr<PredictOptions> ParsePredictFlags(const std::vector<std::string>& args) {
  MKD_ASSIGN_OR_RETURN(ParsedFlags flags, ParseFlags(args, Specs()));
  if (!flags.positional().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", flags.positional()[0], "'"));
  }
  PredictOptions o;
  MKD_ASSIGN_OR_RETURN(o.model, flags.Required("model"));
  MKD_ASSIGN_OR_RETURN(o.weights, flags.Required("weights"));
  MKD_ASSIGN_OR_RETURN(o.images, flags.Required("images"));
  MKD_ASSIGN_OR_RETURN(o.out, flags.Required("out"));
  o.keep = flags.Get("keep");
  o.saliency_out = flags.Get("saliency-out");
  if (flags.Has("num-classes")) {
    MKD_ASSIGN_OR_RETURN(int64_t n, flags.GetInt("num-classes", 0));
    if (n < 1 || n > 1'000'000) {
      return absl::InvalidArgumentError("flag --num-classes must be in [1, 1000000]");
    }
    o.num_classes = static_cast<int>(n);
  }
  MKD_ASSIGN_OR_RETURN(int64_t threads, flags.GetInt("threads", 0));
  MKD_ASSIGN_OR_RETURN(int64_t batch, flags.GetInt("batch-size", 64));
  if (threads < 0 || threads > 1024) {
    return absl::InvalidArgumentError("flag --threads must be in [0, 1024]");
  }
  if (batch < 1) return absl::InvalidArgumentError("flag --batch-size must be positive");
  o.threads = static_cast<int>(threads);
  o.batch_size = static_cast<int>(batch);
  if (o.keep && o.saliency_out) {
    // Saliency is the student's view of the whole image; a kept-token pass
    // has no such view.
    return absl::InvalidArgumentError("--saliency-out needs a full forward: drop --keep");
  }
  return o;
}

absl::Status RunPredict(const PredictOptions& o) {
  ConfigureRuntime(o.threads);
  MKD_ASSIGN_OR_RETURN(ViTConfig config, ResolveViTConfig(o.model));
  if (o.num_classes) {
    config.num_classes = *o.num_classes;
    MKD_RETURN_IF_ERROR(ValidateViTConfig(config));
  }
  VisionTransformer model{nullptr};
  MKD_RETURN_IF_ERROR(CatchTorch("building the model", [&] { model = VisionTransformer(config); }));
  MKD_RETURN_IF_ERROR(LoadViTWeightsFile(*model, o.weights).status());
  model->eval();

  MKD_ASSIGN_OR_RETURN(torch::Tensor images, LoadArray(o.images, DType::kF32, "images"));
  absl::Status st = ValidateImages(config, images);
  if (!st.ok())
    return absl::InvalidArgumentError(absl::StrCat("--images ", o.images, ": ", st.message()));
  const int64_t batch = images.size(0);
  torch::Tensor idx;
  if (o.keep) {
    MKD_ASSIGN_OR_RETURN(idx, LoadArray(*o.keep, DType::kI64, "keep"));
    st = ValidateKeptIndices(idx, batch, config.num_patches());
    if (!st.ok())
      return absl::InvalidArgumentError(absl::StrCat("--keep ", *o.keep, ": ", st.message()));
  }

  std::vector<torch::Tensor> logits, saliency;
  MKD_RETURN_IF_ERROR(CatchTorch("forward pass", [&] {
    torch::NoGradGuard no_grad;
    ForwardOptions fo;
    fo.saliency = o.saliency_out.has_value();
    for (int64_t start = 0; start < batch; start += o.batch_size) {
      int64_t n = std::min<int64_t>(o.batch_size, batch - start);
      torch::Tensor x = images.narrow(0, start, n);
      ViTOutput out = idx.defined() ? model->ForwardKept(x, idx.narrow(0, start, n), fo)
                                    : model->Forward(x, fo);
      logits.push_back(out.logits);
      if (fo.saliency) saliency.push_back(out.saliency);
    }
  }));
  MKD_RETURN_IF_ERROR(WriteTensor(o.out, torch::cat(logits)));
  if (o.saliency_out) MKD_RETURN_IF_ERROR(WriteTensor(*o.saliency_out, torch::cat(saliency)));
  return absl::OkStatus();
}

}  // namespace mkd::cli
