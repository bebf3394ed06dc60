// The trainer's view of a teacher: logits for kept tokens, now or later.
// The embedded default runs the teacher in the student's process
// (MakeInProcessTeacher, here); remote_teacher.h reaches mkd-teacher
// servers over gRPC behind the same interface, so the training loop does
// not change. A pool's plan and telemetry are a PoolSession's.
#ifndef MKD_TEACHER_CLIENT_TEACHER_H_
#define MKD_TEACHER_CLIENT_TEACHER_H_

#include <torch/types.h>

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/micro_batch_stages.h"
#include "common/vit_config.h"
#include "teacher_client/pool_session.h"

namespace mkd::client {

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

  // The teacher's pool session (a remote teacher in a pool, or one fixed
  // remote teacher, which reports its round trips): null in-process.
  // Owned by the teacher.
  virtual PoolSession* session() { return nullptr; }
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

}  // namespace mkd::client

#endif  // MKD_TEACHER_CLIENT_TEACHER_H_
