// MaskedKD token selection as pure functions (docs/design.md section 1, step 2):
// keep ratio -> k, selection criteria, score-map resizing onto a different
// teacher grid, and cutting kept patches out of images for the wire.
#ifndef MKD_COMMON_MASKING_H_
#define MKD_COMMON_MASKING_H_

#include <torch/types.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mkd {

enum class MaskCriterion {
  kStudentTopk,  // The k patches the student's CLS attends to most (default).
  kRandom,       // k uniformly random patches per image.
  kBottomk,      // The k least-attended patches (ablation).
  kAll,          // Every patch: vanilla KD.
  kTeacherTopk,  // Top-k of the teacher's own saliency (costs a full teacher pass).
};

// "student_topk", "random", "bottomk", "all", "teacher_topk".
absl::StatusOr<MaskCriterion> ParseMaskCriterion(absl::string_view name);
absl::string_view MaskCriterionName(MaskCriterion criterion);

// k = round(keep_ratio * num_patches), at least 1. kInvalidArgument unless
// keep_ratio is in (0, 1] and num_patches >= 1.
absl::StatusOr<int64_t> KeepCount(double keep_ratio, int64_t num_patches);

// Chooses k patch indices per row.
// `scores` [B, N]: the saliency on the grid being selected from (student's
// for kStudentTopk / kBottomk, teacher's for kTeacherTopk; ignored by
// kRandom and kAll, which need only its shape). `generator` drives kRandom
// (nullopt: the global generator).
// Returns int64 [B, k], each row sorted ascending (order does not change
// the teacher's CLS output; sorted indices keep gathers cache-friendly and
// make results reproducible). For kAll, k must equal N.
torch::Tensor SelectPatches(const torch::Tensor& scores, int64_t k, MaskCriterion criterion,
                            std::optional<torch::Generator> generator = std::nullopt);

// Top-k with a random share mixed in: the (k - r) highest-scoring patches
// of each row plus r drawn uniformly from the rest, r = round(random_share *
// k) (0 <= random_share < 1). A teacher shown only the student's favourite
// patches never sees the others; a few random ones keep some signal from
// them. Returns int64 [B, k], rows sorted ascending, as SelectPatches.
torch::Tensor SelectTopkMixed(const torch::Tensor& scores, int64_t k, double random_share,
                              std::optional<torch::Generator> generator = std::nullopt);

// Token dropping while training: one k drawn uniformly in
// [KeepCount(keep_min, n), n], then k uniformly random patches per row.
// Returns int64 [rows, k] on `device`, rows sorted ascending.
// REQUIRES: 0 < keep_min <= 1, n >= 1.
torch::Tensor RandomPatchSubset(int64_t rows, int64_t n, double keep_min,
                                torch::Generator generator, const torch::Device& device);

// Bilinearly resizes score maps [B, h_src*w_src] on a (h_src, w_src) grid to
// [B, h_dst*w_dst] (align_corners = false), for a teacher whose patch grid
// differs from the student's. Returns `scores` itself if the grids match.
torch::Tensor ResizeScores(const torch::Tensor& scores, int64_t h_src, int64_t w_src, int64_t h_dst,
                           int64_t w_dst);

// [B, C, H, W] -> [B, N, C*p*p]: every p x p patch, row-major over the grid,
// each flattened channel-major, then row, then column (the layout of a
// Conv2d weight, so patch embedding is a matmul).
torch::Tensor Patchify(const torch::Tensor& images, int64_t patch_size);

// The kept patches only: images [B, C, H, W], idx [B, k] -> [B, k, C*p*p],
// laid out as Patchify. This is what goes on the wire.
torch::Tensor CutPatches(const torch::Tensor& images, const torch::Tensor& idx, int64_t patch_size);

}  // namespace mkd

#endif  // MKD_COMMON_MASKING_H_
