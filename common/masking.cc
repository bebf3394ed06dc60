#include "common/masking.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/str_cat.h"

namespace mkd {
namespace {

struct CriterionName {
  MaskCriterion criterion;
  absl::string_view name;
};

constexpr CriterionName kCriteria[] = {
    {MaskCriterion::kStudentTopk, "student_topk"}, {MaskCriterion::kRandom, "random"},
    {MaskCriterion::kBottomk, "bottomk"},          {MaskCriterion::kAll, "all"},
    {MaskCriterion::kTeacherTopk, "teacher_topk"},
};

}  // namespace

absl::StatusOr<MaskCriterion> ParseMaskCriterion(absl::string_view name) {
  for (const auto& c : kCriteria) {
    if (c.name == name) return c.criterion;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown mask criterion '", name,
                   "'; expected student_topk, random, bottomk, all or teacher_topk"));
}

absl::string_view MaskCriterionName(MaskCriterion criterion) {
  for (const auto& c : kCriteria) {
    if (c.criterion == criterion) return c.name;
  }
  return "unknown";
}

absl::StatusOr<int64_t> KeepCount(double keep_ratio, int64_t num_patches) {
  if (!(keep_ratio > 0.0 && keep_ratio <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("keep_ratio must be in (0, 1], got ", keep_ratio));
  }
  if (num_patches < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_patches must be >= 1, got ", num_patches));
  }
  auto k = static_cast<int64_t>(std::llround(keep_ratio * static_cast<double>(num_patches)));
  return std::max<int64_t>(1, std::min(k, num_patches));
}

torch::Tensor SelectPatches(const torch::Tensor& scores, int64_t k, MaskCriterion criterion,
                            std::optional<torch::Generator> generator) {
  TORCH_CHECK(scores.dim() == 2, "scores must be [B, N]");
  const int64_t b = scores.size(0);
  const int64_t n = scores.size(1);
  TORCH_CHECK(k >= 1 && k <= n, "k must be in [1, N]");
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(scores.device());
  torch::Tensor idx;
  switch (criterion) {
    case MaskCriterion::kAll:
      TORCH_CHECK(k == n, "criterion 'all' keeps every patch: k must equal N");
      return torch::arange(n, long_opts).unsqueeze(0).expand({b, n}).contiguous();
    case MaskCriterion::kRandom: {
      // Top-k of i.i.d. uniform keys is a uniform random k-subset.
      auto float_opts = torch::TensorOptions().dtype(torch::kFloat32).device(scores.device());
      torch::Tensor keys =
          generator ? torch::rand({b, n}, *generator, float_opts) : torch::rand({b, n}, float_opts);
      idx = std::get<1>(keys.topk(k, /*dim=*/1));
      break;
    }
    case MaskCriterion::kStudentTopk:
    case MaskCriterion::kTeacherTopk:
      idx = std::get<1>(scores.detach().topk(k, /*dim=*/1, /*largest=*/true));
      break;
    case MaskCriterion::kBottomk:
      idx = std::get<1>(scores.detach().topk(k, /*dim=*/1, /*largest=*/false));
      break;
  }
  return std::get<0>(idx.sort(/*dim=*/1));
}

torch::Tensor SelectTopkMixed(const torch::Tensor& scores, int64_t k, double random_share,
                              std::optional<torch::Generator> generator) {
  TORCH_CHECK(scores.dim() == 2, "scores must be [B, N]");
  TORCH_CHECK(random_share >= 0 && random_share < 1, "random_share must be in [0, 1)");
  const int64_t n = scores.size(1);
  TORCH_CHECK(k >= 1 && k <= n, "k must be in [1, N]");
  const int64_t r = std::llround(random_share * static_cast<double>(k));
  if (r == 0) return SelectPatches(scores, k, MaskCriterion::kStudentTopk, generator);
  // Uniform keys in [0, 1) for every patch, then 2 for the top (k - r):
  // the top-k of those keys is the top (k - r) plus r uniform others.
  auto float_opts = torch::TensorOptions().dtype(torch::kFloat32).device(scores.device());
  torch::Tensor keys = generator ? torch::rand(scores.sizes(), *generator, float_opts)
                                 : torch::rand(scores.sizes(), float_opts);
  if (k > r) {
    torch::Tensor top = std::get<1>(scores.detach().topk(k - r, /*dim=*/1, /*largest=*/true));
    keys.scatter_(1, top, 2.0);
  }
  torch::Tensor idx = std::get<1>(keys.topk(k, /*dim=*/1));
  return std::get<0>(idx.sort(/*dim=*/1));
}

torch::Tensor RandomPatchSubset(int64_t rows, int64_t n, double keep_min,
                                torch::Generator generator, const torch::Device& device) {
  absl::StatusOr<int64_t> lo = KeepCount(keep_min, n);
  TORCH_CHECK(lo.ok(), std::string(lo.status().message()));
  auto opts = torch::TensorOptions().device(device);
  const int64_t k =
      *lo + torch::randint(n - *lo + 1, {1}, generator, opts.dtype(torch::kInt64)).item<int64_t>();
  return SelectPatches(torch::zeros({rows, n}, opts), k, MaskCriterion::kRandom, generator);
}

torch::Tensor ResizeScores(const torch::Tensor& scores, int64_t h_src, int64_t w_src, int64_t h_dst,
                           int64_t w_dst) {
  TORCH_CHECK(scores.dim() == 2 && scores.size(1) == h_src * w_src,
              "scores must be [B, h_src*w_src]");
  if (h_src == h_dst && w_src == w_dst) return scores;
  namespace F = torch::nn::functional;
  torch::Tensor map = scores.reshape({scores.size(0), 1, h_src, w_src});
  torch::Tensor resized = F::interpolate(map, F::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{h_dst, w_dst})
                                                  .mode(torch::kBilinear)
                                                  .align_corners(false));
  return resized.reshape({scores.size(0), h_dst * w_dst});
}

torch::Tensor Patchify(const torch::Tensor& images, int64_t p) {
  TORCH_CHECK(images.dim() == 4, "images must be [B, C, H, W]");
  const int64_t b = images.size(0), c = images.size(1);
  const int64_t gh = images.size(2) / p, gw = images.size(3) / p;
  TORCH_CHECK(gh * p == images.size(2) && gw * p == images.size(3),
              "image size must be a multiple of the patch size");
  // [B, C, gh, p, gw, p] -> [B, gh, gw, C, p, p] -> [B, N, C*p*p]
  return images.reshape({b, c, gh, p, gw, p})
      .permute({0, 2, 4, 1, 3, 5})
      .reshape({b, gh * gw, c * p * p});
}

torch::Tensor CutPatches(const torch::Tensor& images, const torch::Tensor& idx, int64_t p) {
  TORCH_CHECK(idx.dim() == 2 && idx.size(0) == images.size(0), "idx must be [B, k]");
  torch::Tensor all = Patchify(images, p);  // [B, N, Cpp] (a view when possible)
  torch::Tensor gather_idx = idx.unsqueeze(-1).expand({idx.size(0), idx.size(1), all.size(2)});
  return all.gather(1, gather_idx);
}

}  // namespace mkd
