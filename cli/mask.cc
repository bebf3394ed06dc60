#include "cli/mask.h"

#include <torch/types.h>

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "common/flops.h"
#include "common/masking.h"
#include "common/npy.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "common/vit_config.h"

namespace mkd::cli {
namespace {

const std::vector<FlagSpec>& Specs() {
  static const auto* specs = new std::vector<FlagSpec>{
      {"saliency", true, "student saliency, float32 [B,N] .npy (square grid)"},
      {"teacher", true, "teacher preset or model .yaml (gives the target grid)"},
      {"keep-ratio", true, "fraction of teacher patches to keep, in (0,1] (default 0.5)"},
      {"criterion", true, "student_topk | random | bottomk | all (default student_topk)"},
      {"seed", true, "seed for --criterion random (default 0)"},
      {"out", true, "output int64 [B,k] .npy of kept indices"},
  };
  return *specs;
}

}  // namespace

std::string MaskUsage() {
  return absl::StrCat("usage: mkd mask --saliency S.npy --teacher T --out IDX.npy [options]\n",
                      FlagsUsage(Specs()));
}

absl::StatusOr<MaskOptions> ParseMaskFlags(const std::vector<std::string>& args) {
  MKD_ASSIGN_OR_RETURN(ParsedFlags flags, ParseFlags(args, Specs()));
  if (!flags.positional().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", flags.positional()[0], "'"));
  }
  MaskOptions o;
  MKD_ASSIGN_OR_RETURN(o.saliency, flags.Required("saliency"));
  MKD_ASSIGN_OR_RETURN(o.teacher, flags.Required("teacher"));
  MKD_ASSIGN_OR_RETURN(o.out, flags.Required("out"));
  if (auto r = flags.Get("keep-ratio")) {
    if (!absl::SimpleAtod(*r, &o.keep_ratio)) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --keep-ratio expects a number, got '", *r, "'"));
    }
  }
  if (auto c = flags.Get("criterion")) o.criterion = *c;
  MKD_ASSIGN_OR_RETURN(o.seed, flags.GetInt("seed", 0));
  return o;
}

absl::StatusOr<std::string> RunMask(const MaskOptions& o) {
  MKD_ASSIGN_OR_RETURN(MaskCriterion criterion, ParseMaskCriterion(o.criterion));
  if (criterion == MaskCriterion::kTeacherTopk) {
    return absl::InvalidArgumentError(
        "--criterion teacher_topk needs the teacher's own saliency: run `mkd predict "
        "--saliency-out` on the teacher and pass that as --saliency");
  }
  MKD_ASSIGN_OR_RETURN(ViTConfig teacher, ResolveViTConfig(o.teacher));
  const int64_t n_t = teacher.num_patches();
  MKD_ASSIGN_OR_RETURN(int64_t k, KeepCount(o.keep_ratio, n_t));
  if (criterion == MaskCriterion::kAll) k = n_t;

  MKD_ASSIGN_OR_RETURN(HostArray array, ReadNpy(o.saliency));
  if (array.dtype != DType::kF32 || array.shape.size() != 2 || array.shape[0] < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--saliency ", o.saliency, ": must be float32 [B, N], got ",
                     DTypeName(array.dtype), " ", ShapeString(array.shape)));
  }
  const int64_t n_s = array.shape[1];
  const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n_s))));
  if (side * side != n_s) {
    return absl::InvalidArgumentError(
        absl::StrCat("--saliency ", o.saliency, ": N = ", n_s, " is not a square patch grid"));
  }
  MKD_ASSIGN_OR_RETURN(torch::Tensor scores, ToTensor(array));
  torch::Tensor idx;
  MKD_RETURN_IF_ERROR(CatchTorch("selecting patches", [&] {
    // A teacher with another patch grid gets the student's map resized
    // bilinearly before top-k (MaskedKD, footnote 1).
    torch::Tensor on_teacher =
        ResizeScores(scores, side, side, teacher.grid_size(), teacher.grid_size());
    idx = SelectPatches(on_teacher, k, criterion, at::detail::createCPUGenerator(o.seed));
  }));
  MKD_ASSIGN_OR_RETURN(HostArray out, FromTensor(idx));
  MKD_RETURN_IF_ERROR(WriteNpy(o.out, out));
  double full = ViTForwardFlops(teacher, n_t);
  double kept = ViTForwardFlops(teacher, k);
  return absl::StrFormat(
      "kept %d of %d teacher patches per image (%s, student grid %dx%d -> teacher %dx%d); "
      "teacher GFLOPs/img %.3f vs %.3f full (%.2fx fewer)",
      k, n_t, MaskCriterionName(criterion), side, side, teacher.grid_size(), teacher.grid_size(),
      kept / 1e9, full / 1e9, full / kept);
}

}  // namespace mkd::cli
