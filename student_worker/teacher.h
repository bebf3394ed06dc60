// The trainer's view of a teacher: logits for kept tokens. The embedded
// default runs the teacher in the student's process; issue "Teacher server"
// adds a gRPC implementation behind the same interface, so the training
// loop does not change.
#ifndef MKD_STUDENT_WORKER_TEACHER_H_
#define MKD_STUDENT_WORKER_TEACHER_H_

#include <torch/types.h>

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/micro_batch_stages.h"
#include "common/vit_config.h"

namespace mkd::student {

// A teacher's answer to one micro-batch: its logits, and the stages of its
// path that the teacher client measured (a remote one: encode, send, the
// server's stages, transfer, decode; see common/micro_batch_stages.h).
struct TeacherAnswer {
  torch::Tensor logits;
  StageSeconds stages;
};

// An answer that may still be on its way (a remote teacher's).
using PendingLogits = std::shared_future<absl::StatusOr<TeacherAnswer>>;

// Waits up to `timeout` for `pending`; kDeadlineExceeded if it has not
// arrived by then.
absl::StatusOr<TeacherAnswer> AwaitAnswer(const PendingLogits& pending, absl::Duration timeout);
// As AwaitAnswer, the logits alone.
absl::StatusOr<torch::Tensor> AwaitLogits(const PendingLogits& pending, absl::Duration timeout);

// What the trainer measured over one distill step, for the pool's planner
// (per micro-batch means, seconds).
struct StepTimings {
  int64_t step = 0;
  int micro_batches = 1;
  double forward_s = 0;   // Student forward, selection and submission.
  double backward_s = 0;  // Loss and backward, after the answer arrived.
  double step_s = 0;
  double images_per_s = 0;
  double predicted_step_s = 0;  // The plan's prediction for this m (0: none).
};

// What a remote teacher saw since the last TakeStats.
struct TeacherStats {
  std::vector<double> round_trips_s;  // Per answered micro-batch: last send to answer.
  double service_s = 0;               // Sum of server queue + compute over them.
  int64_t retries = 0;                // Re-sends after a retryable answer.
  int64_t failovers = 0;              // Micro-batches moved off a broken or removed teacher.
};

// Thread-compatible: the trainer's thread makes every call.
class Teacher {
 public:
  virtual ~Teacher() = default;

  // The teacher's architecture (patch grid, classes, image size).
  virtual const ViTConfig& config() const = 0;

  // Logits [B, classes] (no grad) of the teacher on the kept patches `idx`
  // [B, k] (indices into its own grid) of `images` [B, C, H, W], which are
  // normalised for the student; kInvalidArgument on bad shapes/indices.
  virtual absl::StatusOr<torch::Tensor> Logits(const torch::Tensor& images,
                                               const torch::Tensor& idx) = 0;

  // As Logits, but may return before the logits exist, so the caller can
  // go on with the next micro-batch (pipelining). The default computes
  // them first. The inputs are not referenced after the call returns.
  virtual PendingLogits SubmitLogits(const torch::Tensor& images, const torch::Tensor& idx);
  // The stage that the SubmitLogits call itself is, on the caller's thread:
  // the forward for a teacher in this process, the copy of the kept
  // patches to the host for a remote one.
  virtual Stage SubmitStage() const { return Stage::kTeacherForward; }

  // The teacher's own CLS saliency [B, N] from a full pass (criterion
  // teacher_topk).
  virtual absl::StatusOr<torch::Tensor> Saliency(const torch::Tensor& images) = 0;

  // The pool's plan for this job: micro-batches per step and the step time
  // it predicts (0: no plan; the trainer keeps its own m).
  virtual int PlannedMicroBatches() { return 0; }
  virtual double PredictedStepSeconds() { return 0; }
  // Hands one step's timings to the pool's planner (no-op in-process).
  virtual void ReportStep(const StepTimings&) {}
  // Round trips and failure handling since the last call (empty in-process).
  virtual TeacherStats TakeStats() { return {}; }
};

// Loads `weights` (safetensors) into the model given by `model_spec`
// (preset or YAML) and serves it in this process, in eval mode, on `device`
// with its weights in `dtype` (a reduced dtype only on CUDA, where it halves
// the teacher's cost as the server's `dtype` does). Inputs may live on any
// device; logits come back as float32 on the inputs' device.
absl::StatusOr<std::unique_ptr<Teacher>> MakeInProcessTeacher(const std::string& model_spec,
                                                              const std::string& weights,
                                                              torch::Device device = torch::kCPU,
                                                              torch::Dtype dtype = torch::kFloat32);

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_TEACHER_H_
