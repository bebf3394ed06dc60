// What a training run says about its progress, in two forms: a log line
// (common/log.h) per logged step and per evaluation, and the same as one
// JSON object per line in run.out_dir/metrics.jsonl, which the plots,
// benchmarks and tests read. Every rank logs; only rank 0 writes the file
// (its lines carry the summary over ranks). Torch-free; not thread-safe
// (the trainer's thread only).
#ifndef MKD_STUDENT_WORKER_STEP_LOG_H_
#define MKD_STUDENT_WORKER_STEP_LOG_H_

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "student_worker/step_result.h"

namespace mkd::student {

class StepLog {
 public:
  // Where the run stands when a line is written.
  struct Progress {
    int64_t epoch = 0;  // 1-based for a step (the epoch it is in), the finished one for an eval.
    int epochs = 0;
    int64_t step = 0;
    int64_t total_steps = 0;
    double flops_spent = 0;  // Teacher FLOPs so far ...
    double flops_full = 0;   // ... and what vanilla KD would have spent.
  };

  // `rank_tag` ("rank r/w: ", or "" with one rank) begins every log line;
  // `ranks` is the job's world size.
  StepLog(std::string rank_tag, int ranks);
  ~StepLog();
  StepLog(const StepLog&) = delete;
  StepLog& operator=(const StepLog&) = delete;

  // Rank 0: opens `out_dir`/metrics.jsonl, afresh, or after --resume from
  // `resumed_step` with the lines of later steps dropped (a run that died
  // after its last checkpoint logged steps its resumed run does again, and
  // every step is logged once).
  absl::Status OpenJsonl(const std::string& out_dir, bool resume, int64_t resumed_step);

  // A logged step. `distill`: the step had a teacher (k, FLOPs, the
  // pipeline's timings); `loss_scale`: fp16's, when gradient scaling is on.
  void Step(const Progress& p, const StepResult& r, double images_per_s, double eta_s, bool distill,
            std::optional<double> loss_scale);
  void Eval(const Progress& p, const EvalResult& e);

 private:
  void AppendJson(const std::string& line);

  const std::string rank_tag_;
  const int ranks_;
  std::FILE* jsonl_ = nullptr;
};

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_STEP_LOG_H_
