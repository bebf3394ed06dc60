// Trainer: one optimisation step (train and distill modes).
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/device_timer.h"
#include "common/flops.h"
#include "common/losses.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "student_worker/trainer.h"

namespace mkd::student {

absl::StatusOr<StepResult> Trainer::RunStep(const Batch& batch) {
  Batch on_device;
  MKD_RETURN_IF_ERROR(CatchTorch("copying the batch", [&] { on_device = Unstage(Stage(batch)); }));
  MKD_ASSIGN_OR_RETURN(StepResult r, StepOnDevice(on_device));
  ++step_;
  return r;
}

Trainer::StagedBatch Trainer::Stage(Batch batch) {
  StagedBatch staged;
  std::vector<torch::Tensor> host = {batch.images, batch.labels};
  if (batch.targets.defined()) host.push_back(batch.targets);
  staged.transfer = h2d_->Start(host);
  batch.images = batch.labels = batch.targets = torch::Tensor();
  staged.meta = std::move(batch);
  return staged;
}

Batch Trainer::Unstage(StagedBatch staged) {
  std::vector<torch::Tensor> t = h2d_->Finish(std::move(staged.transfer));
  Batch b = std::move(staged.meta);
  b.images = t[0];
  b.labels = t[1];
  if (t.size() > 2) b.targets = t[2];
  return b;
}

double Trainer::KeepRatioNow() const {
  const double start = config_.distill.keep_ratio;
  if (!config_.distill.keep_ratio_end) return start;
  const double t = total_steps_ > 1 ? static_cast<double>(step_) / (total_steps_ - 1) : 0.0;
  return start + (*config_.distill.keep_ratio_end - start) * t;
}

absl::StatusOr<torch::Tensor> Trainer::SelectForTeacher(const torch::Tensor& images,
                                                        const torch::Tensor& saliency, int64_t k,
                                                        at::Generator& gen) {
  const ViTConfig& t = teacher_->config();
  const int64_t b = images.size(0);
  torch::Tensor scores;
  switch (config_.distill.criterion) {
    case MaskCriterion::kStudentTopk:
    case MaskCriterion::kBottomk: {
      const int64_t g = config_.model.grid_size();
      // Student and teacher grids may differ (patch 14 vs 16): resize first.
      scores = ResizeScores(saliency.detach(), g, g, t.grid_size(), t.grid_size());
      break;
    }
    case MaskCriterion::kTeacherTopk: {
      MKD_ASSIGN_OR_RETURN(scores, teacher_->Saliency(images));
      flops_spent_ += b * ViTForwardFlops(t, t.num_patches());  // The extra full pass.
      break;
    }
    case MaskCriterion::kRandom:
    case MaskCriterion::kAll:
      // Only the shape (and device) matter to these criteria.
      scores = torch::zeros({b, t.num_patches()}, torch::TensorOptions().device(device_));
      break;
  }
  if (config_.distill.criterion == MaskCriterion::kAll) k = t.num_patches();
  if (config_.distill.random_share > 0) {  // Validate allows it with top-k criteria only.
    return SelectTopkMixed(scores, k, config_.distill.random_share, gen);
  }
  return SelectPatches(scores, k, config_.distill.criterion, gen);
}

Trainer::LossTerms Trainer::SupervisedForwardBackward(const Batch& batch) {
  torch::Tensor loss;
  {
    AutocastGuard autocast(device_, precision_);
    torch::Tensor logits;
    if (config_.data.token_keep_min < 1) {
      // Seeded per step (as the distill selection) so a resumed run draws the same.
      at::Generator gen =
          MakeGenerator(device_, MixSeed({config_.seed, static_cast<uint64_t>(step_), 0x64726f70}));
      torch::Tensor idx = RandomPatchSubset(batch.images.size(0), config_.model.num_patches(),
                                            config_.data.token_keep_min, gen, device_);
      logits = model_->ForwardKept(batch.images, idx).logits;
    } else {
      logits = model_->Forward(batch.images).logits;
    }
    logits = logits.to(torch::kFloat32);
    loss = SoftTargetCrossEntropy(logits, batch.targets);
  }
  if (dp_) dp_->ArmHooks();  // This backward completes the step's gradients.
  scaler_->Scale(loss).backward();
  LossTerms terms;
  terms.weights = {1.0};
  terms.terms = {torch::stack({loss.detach(), loss.detach(), torch::zeros_like(loss)})};
  return terms;
}

absl::StatusOr<Trainer::LossTerms> Trainer::DistillForwardBackward(const Batch& batch,
                                                                   StepResult* r) {
  const ViTConfig& t = teacher_->config();
  MKD_ASSIGN_OR_RETURN(int64_t k, KeepCount(KeepRatioNow(), t.num_patches()));
  ForwardOptions fo;
  fo.saliency = config_.distill.criterion == MaskCriterion::kStudentTopk ||
                config_.distill.criterion == MaskCriterion::kBottomk;
  fo.saliency_mode = config_.distill.saliency;
  // Random selection is seeded per step so a resumed run picks the same;
  // the generator lives on the device, so a GPU run draws there.
  at::Generator gen =
      MakeGenerator(device_, MixSeed({config_.seed, static_cast<uint64_t>(step_), 0x6d61736b}));
  const int64_t total = batch.images.size(0);
  const int64_t m = MicroBatchesNow(total);
  const absl::Time phase1 = absl::Now();
  struct Micro {
    int64_t start = 0, rows = 0;
    torch::Tensor logits;  // Student's, with its graph.
    client::PendingLogits teacher;
    // DeviceTimer marks: forward, selection, submission; host-to-device,
    // loss and backward.
    int forward = 0, selected = 0, submitted = 0, answered = 0, on_device = 0, done = 0;
    StageSeconds stages;
  };
  std::vector<Micro> micro(m);
  timer_->Reset();
  // Phase 1: every micro-batch's student forward, then its teacher request
  // goes out; the teacher works on micro-batch i while the student runs i+1.
  for (int64_t i = 0, start = 0; i < m; ++i) {
    Micro& mb = micro[i];
    mb.start = start;
    mb.rows = total / m + (i < total % m ? 1 : 0);
    start += mb.rows;
    torch::Tensor images = batch.images.narrow(0, mb.start, mb.rows);
    ViTOutput out;
    mb.forward = timer_->Mark();
    {
      ProfileRange range("student_forward");
      AutocastGuard autocast(device_, precision_);
      out = model_->Forward(images, fo);
    }
    mb.logits = out.logits.to(torch::kFloat32);  // Losses in fp32 at any precision.
    mb.selected = timer_->Mark();
    torch::Tensor idx;
    {
      ProfileRange range("selection");
      MKD_ASSIGN_OR_RETURN(idx, SelectForTeacher(images, out.saliency, k, gen));
    }
    r->kept_patches = idx.size(1);
    mb.submitted = timer_->Mark();
    {
      ProfileRange range("submit");
      mb.teacher = teacher_->SubmitLogits(images, idx);
    }
    r->flops += mb.rows * ViTForwardFlops(t, r->kept_patches);
    r->flops_full += mb.rows * ViTForwardFlops(t, t.num_patches());
  }
  const int submitted_last = timer_->Mark();
  flops_spent_ += r->flops;
  flops_full_ += r->flops_full;
  const absl::Time phase2 = absl::Now();
  double backward_s = 0;
  // Phase 2: in order, as logits arrive: loss and backward. Weighting by
  // rows/total makes the sum the whole batch's mean loss. In submission
  // order rather than arrival order on purpose: gradients then accumulate
  // in a fixed order, so a run (and its resume) is bit-reproducible; the
  // server answers one job's micro-batches first-in first-out anyway.
  const DistillLossOptions lo{config_.distill.alpha, config_.distill.tau, config_.distill.kind};
  const absl::Duration timeout = absl::Milliseconds(config_.distill.teacher_timeout_ms);
  LossTerms terms_out;
  for (Micro& mb : micro) {
    const absl::Time waiting = absl::Now();
    absl::StatusOr<client::TeacherAnswer> answer;
    {
      ProfileRange range("wait");
      answer = client::AwaitAnswer(mb.teacher, timeout * 2);
    }
    if (!answer.ok()) return answer.status();
    const absl::Time answered = absl::Now();
    r->wait_s += absl::ToDoubleSeconds(answered - waiting);
    mb.stages = std::move(answer->stages);
    mb.stages.Set(mkd::Stage::kWait, absl::ToDoubleSeconds(answered - waiting));
    const double w = static_cast<double>(mb.rows) / total;
    mb.answered = timer_->Mark();
    // A remote teacher answers on the host; the loss runs on the device.
    torch::Tensor t_logits = answer->logits.to(device_, torch::kFloat32);
    mb.on_device = timer_->Mark();
    DistillLossTerms terms;
    {
      ProfileRange range("loss_backward");
      {
        AutocastGuard autocast(device_, precision_);
        terms = DistillLoss(mb.logits, t_logits, batch.targets.narrow(0, mb.start, mb.rows), lo);
      }
      if (dp_ && &mb == &micro.back()) dp_->ArmHooks();  // The step's last backward.
      scaler_->Scale(terms.total * w).backward();
    }
    mb.done = timer_->Mark();
    terms_out.weights.push_back(w);
    terms_out.terms.push_back(
        torch::stack({terms.total.detach(), terms.ce.detach(), terms.kd.detach()}));
    backward_s += absl::ToDoubleSeconds(absl::Now() - answered);
  }
  r->timings.micro_batches = static_cast<int>(m);
  r->timings.forward_s = absl::ToDoubleSeconds(phase2 - phase1) / m;
  r->timings.backward_s = backward_s / m;
  r->timings.predicted_step_s = session_ ? session_->PredictedStepSeconds() : 0;
  // The marks are read once the step's losses are on the host (the device
  // has finished by then): see StepOnDevice.
  stage_reader_ = [this, micro = std::move(micro), submitted_last](StepResult* res) {
    const mkd::Stage submit = teacher_->SubmitStage();
    for (size_t i = 0; i < micro.size(); ++i) {
      const Micro& mb = micro[i];
      const int submit_end = i + 1 < micro.size() ? micro[i + 1].forward : submitted_last;
      StageSeconds st = mb.stages;
      st.Set(mkd::Stage::kStudentForward, timer_->Seconds(mb.forward, mb.selected));
      st.Set(mkd::Stage::kSelection, timer_->Seconds(mb.selected, mb.submitted));
      st.Set(submit, timer_->Seconds(mb.submitted, submit_end));
      st.Set(mkd::Stage::kHostToDevice, timer_->Seconds(mb.answered, mb.on_device));
      st.Set(mkd::Stage::kLossBackward, timer_->Seconds(mb.on_device, mb.done));
      res->stages.push_back(st);
    }
  };
  return terms_out;
}

int64_t Trainer::MicroBatchesNow(int64_t rows) const {
  int64_t m = config_.distill.micro_batches;
  if (m <= 0 && session_) m = session_->PlannedMicroBatches();
  return std::clamp<int64_t>(m, 1, rows);
}

absl::StatusOr<StepResult> Trainer::StepOnDevice(const Batch& batch) {
  const absl::Time started = absl::Now();
  StepResult r;
  r.lr = ScheduledLr(config_.optim, peak_lr_, step_,
                     static_cast<int64_t>(config_.optim.warmup_epochs * steps_per_epoch_),
                     total_steps_);
  model_->train();
  if (dp_) {
    // Drop-path draws differ per rank (as they would per image in one big
    // batch) and depend only on (seed, step, rank), so a resume redraws them.
    torch::manual_seed(MixSeed(
        {config_.seed, static_cast<uint64_t>(step_), static_cast<uint64_t>(rank_), 0x72616e6b}));
  }
  absl::Status inner = absl::OkStatus();
  stage_reader_ = nullptr;
  MKD_RETURN_IF_ERROR(CatchTorch("train step", [&] {
    optimizer_->ZeroGrad();
    LossTerms terms;
    {
      // The weights are cast to the reduced dtype once per step, not once
      // per micro-batch and loss; the cache goes before the optimizer step.
      CastCacheScope cast_once(precision_);
      if (teacher_) {
        absl::StatusOr<LossTerms> d = DistillForwardBackward(batch, &r);
        inner = d.status();
        if (!inner.ok()) return;
        terms = std::move(*d);
      } else {
        terms = SupervisedForwardBackward(batch);
      }
    }
    if (dp_) {  // Every rank's gradients become their mean.
      inner = dp_->AverageGradients();
      if (!inner.ok()) return;
    }
    // fp16: gradients come back to their true size, and a step whose
    // gradients overflowed is skipped (the scale backs off instead).
    const bool finite = scaler_->Unscale(model_->parameters());
    if (finite) {
      if (config_.optim.clip_grad_norm > 0) {
        torch::nn::utils::clip_grad_norm_(model_->parameters(), config_.optim.clip_grad_norm);
      }
      optimizer_->Step(r.lr);
    }
    scaler_->Update(!finite);
    r.skipped = !finite;
    // The step's one read from the device: every loss term at once, summed
    // in double on the host as the weights say.
    torch::Tensor host = torch::stack(terms.terms).to(torch::kCPU, torch::kFloat64);
    for (size_t i = 0; i < terms.weights.size(); ++i) {
      r.loss += terms.weights[i] * host[i][0].item<double>();
      r.ce += terms.weights[i] * host[i][1].item<double>();
      r.kd += terms.weights[i] * host[i][2].item<double>();
    }
    if (stage_reader_) stage_reader_(&r);  // The device is done: reading costs nothing.
  }));
  stage_reader_ = nullptr;
  MKD_RETURN_IF_ERROR(inner);
  if (teacher_) {
    r.timings.step = step_ + 1;
    r.timings.step_s = absl::ToDoubleSeconds(absl::Now() - started);
    r.timings.images_per_s = batch.images.size(0) / std::max(r.timings.step_s, 1e-9);
    if (session_) session_->ReportStep(r.timings);  // For the pool's planner.
  }
  if (!std::isfinite(r.loss)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "loss is ", r.loss, " at step ", step_, "; lower optim.lr or set optim.clip_grad_norm"));
  }
  return r;
}

}  // namespace mkd::student
