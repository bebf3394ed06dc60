// Trainer: what a data-parallel rank does beyond a lone trainer (the step
// summary over ranks, the resume check). The gradient averaging itself is
// in StepOnDevice, through DataParallel.
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "student_worker/trainer.h"

namespace mkd::student {

std::string Trainer::RankTag() const {
  return world_size_ > 1 ? absl::StrCat("rank ", rank_, "/", world_size_, ": ") : "";
}

absl::StatusOr<StepResult> Trainer::AcrossRanks(const StepResult& r, double* images_per_s) {
  if (!dp_) return r;
  // Ranks log at the same steps (the same config), so this collective
  // lines up; losses and times are means, throughput adds up.
  MKD_ASSIGN_OR_RETURN(
      std::vector<double> sum,
      dp_->SumOverRanks({r.loss, r.ce, r.kd, *images_per_s, r.wait_s, r.timings.step_s,
                         r.timings.forward_s, r.timings.backward_s},
                        "summing the step summary"));
  const double n = world_size_;
  StepResult all = r;
  all.loss = sum[0] / n;
  all.ce = sum[1] / n;
  all.kd = sum[2] / n;
  *images_per_s = sum[3];
  all.wait_s = sum[4] / n;
  all.timings.step_s = sum[5] / n;
  all.timings.forward_s = sum[6] / n;
  all.timings.backward_s = sum[7] / n;
  return all;
}

absl::Status Trainer::AgreeOnResume() {
  MKD_ASSIGN_OR_RETURN(std::vector<std::vector<int64_t>> at,
                       dp_->AllGather({step_, epoch_, next_batch_}, "comparing resumed steps"));
  for (int r = 1; r < world_size_; ++r) {
    if (at[r] != at[0]) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--resume: rank ", r, " restored step ", at[r][0], " but rank 0 restored step ", at[0][0],
          "; every rank must read the same run.out_dir (a volume they share)"));
    }
  }
  // The optimizer state came from the same file on every rank; the
  // weights are broadcast anyway, so a rank can never drift.
  return dp_->Broadcast(model_->parameters());
}

}  // namespace mkd::student
