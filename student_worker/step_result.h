// What a training step and an evaluation produce: the trainer returns
// them, StepLog reports them. Torch-free.
#ifndef MKD_STUDENT_WORKER_STEP_RESULT_H_
#define MKD_STUDENT_WORKER_STEP_RESULT_H_

#include <cstdint>
#include <vector>

#include "common/micro_batch_stages.h"
#include "teacher_client/pool_session.h"

namespace mkd::student {

struct EvalResult {
  double top1 = 0;  // Fractions in [0, 1].
  double top5 = 0;
  double loss = 0;
  int64_t images = 0;
};

struct StepResult {
  double loss = 0, ce = 0, kd = 0, lr = 0;
  int64_t kept_patches = 0;  // k, patches per image given to the teacher (0 in train mode).
  bool skipped = false;      // fp16: gradients overflowed; no update was made.
  // Distill mode: how the step went (per micro-batch means; wall clock,
  // so on a GPU forward/backward include only what the host waited for).
  client::StepTimings timings;
  double wait_s = 0;      // Time spent waiting for teacher answers.
  double flops = 0;       // Teacher FLOPs this step spent ...
  double flops_full = 0;  // ... and what vanilla KD would have.
  // Distill mode: each micro-batch's stages (common/micro_batch_stages.h),
  // the trainer's own timed on the device.
  std::vector<StageSeconds> stages;
};

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_STEP_RESULT_H_
