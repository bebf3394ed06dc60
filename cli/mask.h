// `mkd mask`: the MaskedKD selection step as a command. Reads a student
// saliency [B, N_s] (from `mkd predict --saliency-out`), resizes it onto the
// teacher's patch grid if needed, picks k = round(keep_ratio * N_t) patches
// per image by the chosen criterion and writes them as int64 [B, k] for
// `mkd predict --keep`. Prints the teacher FLOPs spent vs a full pass.
#ifndef MKD_CLI_MASK_H_
#define MKD_CLI_MASK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mkd::cli {

struct MaskOptions {
  std::string saliency;  // float32 [B, N_s] .npy.
  std::string teacher;   // Teacher preset or model YAML (its grid).
  double keep_ratio = 0.5;
  std::string criterion = "student_topk";
  int64_t seed = 0;  // For criterion "random".
  std::string out;   // int64 [B, k] .npy.
};

absl::StatusOr<MaskOptions> ParseMaskFlags(const std::vector<std::string>& args);
std::string MaskUsage();

// On success writes `out` and returns a one-line summary for the user.
absl::StatusOr<std::string> RunMask(const MaskOptions& options);

}  // namespace mkd::cli

#endif  // MKD_CLI_MASK_H_
