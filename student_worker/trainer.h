// The training loop for both modes:
//   train    plain supervised training (how teachers are made);
//   distill  MaskedKD: student forward with CLS saliency, selection of the
//            teacher's kept patches, teacher logits on those only, loss
//            (1-alpha)*CE + alpha*KD, backward through the student.
// Owns the model, optimizer, loaders, teacher, checkpoints and logs. Its
// code is split by concept: building (trainer_build.cc), the epoch loop and
// evaluation (trainer_loop.cc), one step (trainer_step.cc), checkpoints
// and resume (trainer_checkpoint.cc), data-parallel agreement
// (trainer_ranks.cc); what a run reports is StepLog's (step_log.h).
// Not thread-safe: one trainer per process/thread. Links no gRPC: a
// remote teacher comes from teacher_client/ through the Teacher interface.
#ifndef MKD_STUDENT_WORKER_TRAINER_H_
#define MKD_STUDENT_WORKER_TRAINER_H_

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/device.h"
#include "common/device_timer.h"
#include "common/host_to_device.h"
#include "common/masking.h"
#include "common/vit.h"
#include "student_worker/data_parallel.h"
#include "student_worker/grad_scaler.h"
#include "student_worker/loader.h"
#include "student_worker/optimizer.h"
#include "student_worker/step_log.h"
#include "student_worker/step_result.h"
#include "student_worker/student_metrics.h"
#include "student_worker/train_config.h"
#include "teacher_client/teacher.h"

namespace mkd::student {

class Trainer {
 public:
  // Builds everything from `config`. In distill mode the teacher is
  // `teacher` if given (tests, remote teachers), else the in-process one
  // from distill.teacher_model/teacher_weights. With config.dist.world_size
  // > 1 (resolved: dist_env.h) this process is one rank of a data-parallel
  // job: Create meets the other ranks first and takes rank 0's weights.
  // Then data.batch_size is per rank (the step's batch is world_size times
  // it, and the learning rate scales with that); rank 0 alone writes
  // checkpoints and metrics.jsonl, and every rank resumes from them.
  // `remote` builds the teacher when the config names a remote one
  // (teacher_client::MakeJobTeacher in mkd-student); called after a
  // data-parallel rank has met the others. Without it such a config is an
  // error.
  using RemoteTeacherFactory =
      std::function<absl::StatusOr<std::unique_ptr<client::Teacher>>(const TrainConfig&)>;
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      const TrainConfig& config, std::unique_ptr<client::Teacher> teacher = nullptr,
      const RemoteTeacherFactory& remote = nullptr);
  ~Trainer();

  // Trains until the configured epochs (or run.max_steps) are done,
  // evaluating and checkpointing on the way. With `resume`, first restores
  // the latest checkpoint in run.out_dir (if any) and continues exactly.
  absl::Status Train(bool resume);

  // Top-1/top-5 on the eval split.
  absl::StatusOr<EvalResult> Evaluate();

  // One optimisation step on `batch` (targets must be set; its tensors on
  // the CPU or already on run.device), as Train() does; for benchmarks and
  // tests that drive steps on ready batches. Synchronises with the device
  // once, when the step's loss is read.
  absl::StatusOr<StepResult> RunStep(const Batch& batch);

  // Loads student weights (safetensors) for eval-only runs.
  absl::Status LoadWeights(const std::string& path);

  // The evaluation Train() ran after its last step, if it ran one there.
  std::optional<EvalResult> final_eval() const {
    return last_eval_step_ == step_ ? last_eval_ : std::nullopt;
  }

  VisionTransformer& model() { return model_; }
  const torch::Device& device() const { return device_; }
  int64_t step() const { return step_; }
  double loss_scale() const { return scaler_ ? scaler_->scale() : 1.0; }
  double teacher_flops_spent() const { return flops_spent_; }
  double teacher_flops_full() const { return flops_full_; }

 private:
  Trainer(const TrainConfig& config, std::unique_ptr<Dataset> train_data,
          std::unique_ptr<Dataset> eval_data, std::unique_ptr<client::Teacher> teacher);
  // A batch whose copy to the device is under way (Train() starts the next
  // batch's copy before computing the current step, so they overlap).
  struct StagedBatch {
    Batch meta;  // epoch, index, skipped; tensors moved into `transfer`.
    HostToDevice::Transfer transfer;
  };
  absl::Status Init();
  StagedBatch Stage(Batch batch);
  Batch Unstage(StagedBatch staged);
  // REQUIRES: the batch's tensors are on device_.
  absl::StatusOr<StepResult> StepOnDevice(const Batch& batch);
  // A step's loss terms, left on the device until the step ends: per
  // micro-batch a [loss, ce, kd] tensor and its weight in the batch mean.
  struct LossTerms {
    std::vector<double> weights;
    std::vector<torch::Tensor> terms;
  };
  // Train mode: forward and loss under autocast for run.precision, then
  // backward (of the scaled loss under fp16). May throw c10::Error;
  // StepOnDevice catches it.
  LossTerms SupervisedForwardBackward(const Batch& batch);
  // Distill mode, pipelined over distill.micro_batches: for each
  // micro-batch, student forward, selection and teacher submission; then,
  // in order, as each one's teacher logits arrive: its loss and backward
  // (gradients accumulate, weighted by rows). Sets r->kept_patches.
  absl::StatusOr<LossTerms> DistillForwardBackward(const Batch& batch, StepResult* r);
  absl::StatusOr<torch::Tensor> SelectForTeacher(const torch::Tensor& images,
                                                 const torch::Tensor& saliency, int64_t k,
                                                 at::Generator& gen);
  double KeepRatioNow() const;
  // State to put back when a step fails midway: the random generators
  // and FLOP counters as they were when the step began (the weights and the
  // optimizer change only at its end).
  struct StepStart {
    torch::Tensor cpu_rng, device_rng;
    double flops_spent = 0, flops_full = 0;
  };
  StepStart Snapshot() const;
  // Micro-batches for this step: the config's, else the pool's plan, else 1.
  int64_t MicroBatchesNow(int64_t rows) const;
  // `start`: write the RNG state of a step's start instead of the current.
  absl::Status SaveCheckpoint(const StepStart* start = nullptr);
  // A step that failed because its teachers did (unavailable, timed out,
  // busy) first checkpoints the last completed step; returns `why`,
  // annotated.
  absl::Status StepFailed(const absl::Status& why, const StepStart& start);
  void ObserveStep(const StepResult& r, int64_t images);
  // --resume: the newest readable checkpoint (latest, else older ones).
  absl::Status Resume();
  absl::Status RestoreCheckpoint(int64_t step);
  // Data parallel: the step's summary over all ranks (mean loss terms and
  // step times, summed throughput); `r` itself with one rank.
  absl::StatusOr<StepResult> AcrossRanks(const StepResult& r, double* images_per_s);
  // After --resume: every rank restored the same step, and takes rank 0's
  // weights (so a stray difference cannot grow).
  absl::Status AgreeOnResume();
  // "rank r/w: " before a data-parallel rank's log lines; "" with one rank.
  std::string RankTag() const;
  // Where the run stands, for StepLog: in the epoch under way, or
  // `after_epoch` (an evaluation of the epoch just finished).
  StepLog::Progress ProgressForLog(bool after_epoch) const;

  // Constant after Init().
  const TrainConfig config_;
  torch::Device device_{torch::kCPU};
  DType precision_ = DType::kF32;
  std::unique_ptr<HostToDevice> h2d_;
  std::unique_ptr<DeviceTimer> timer_;  // Times the micro-batches' stages.
  // Set by DistillForwardBackward: fills a StepResult's stages once the
  // step's device work has finished.
  std::function<void(StepResult*)> stage_reader_;
  std::unique_ptr<GradScaler> scaler_;
  std::unique_ptr<Dataset> train_data_;
  std::unique_ptr<Dataset> eval_data_;
  std::unique_ptr<client::Teacher> teacher_;
  client::PoolSession* session_ = nullptr;  // The teacher's, if it has one.
  VisionTransformer model_{nullptr};
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<Loader> train_loader_;
  std::unique_ptr<Loader> eval_loader_;
  int64_t steps_per_epoch_ = 0;
  int64_t total_steps_ = 0;
  double peak_lr_ = 0;

  // Progress; saved in checkpoints.
  int64_t step_ = 0;
  int64_t epoch_ = 0;
  int64_t next_batch_ = 0;  // Within epoch_.
  double flops_spent_ = 0;  // Teacher FLOPs so far.
  double flops_full_ = 0;   // What vanilla KD would have spent.
  int64_t skipped_ = 0;     // Unreadable examples so far.

  std::optional<EvalResult> last_eval_;
  int64_t last_eval_step_ = -1;

  std::unique_ptr<StepLog> log_;             // Made by Train().
  std::unique_ptr<StudentMetrics> metrics_;  // With run.metrics_listen.
  std::unique_ptr<DataParallel> dp_;         // With dist.world_size > 1.
  int rank_ = 0;
  int world_size_ = 1;
};

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_TRAINER_H_
