#include "student_worker/trainer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/flops.h"
#include "common/losses.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "proto/job_token.h"
#include "student_worker/remote_teacher.h"

namespace mkd::student {
namespace {

// A dataset view of the first `limit` examples (data.limit_train/eval).
class Prefix final : public Dataset {
 public:
  Prefix(std::unique_ptr<Dataset> inner, size_t limit) : inner_(std::move(inner)), limit_(limit) {}
  size_t size() const override { return std::min(limit_, inner_->size()); }
  int num_classes() const override { return inner_->num_classes(); }
  std::string name() const override { return absl::StrCat(inner_->name(), "[:", size(), "]"); }
  absl::StatusOr<Example> Get(size_t i) const override { return inner_->Get(i); }

 private:
  std::unique_ptr<Dataset> inner_;
  size_t limit_;
};

absl::StatusOr<std::unique_ptr<Dataset>> OpenSplit(const DataConfig& d, const std::string& split,
                                                   int64_t limit) {
  MKD_ASSIGN_OR_RETURN(std::unique_ptr<Dataset> data, OpenDataset(d.kind, d.dir, split));
  if (limit > 0) data = std::make_unique<Prefix>(std::move(data), static_cast<size_t>(limit));
  return data;
}

// The remote teacher (one address, or a pool) for a distill config.
absl::StatusOr<std::unique_ptr<Teacher>> MakeRemote(const TrainConfig& config) {
  const DistillConfig& d = config.distill;
  RemoteTeacherOptions o;
  o.address = d.teacher_address;
  o.coordinator = d.coordinator;
  o.wire_dtype = d.wire_dtype;
  o.timeout = absl::Milliseconds(d.teacher_timeout_ms);
  o.reconnect_timeout = o.timeout;
  o.teacher_wait = absl::Seconds(d.teacher_wait_s);
  o.job_id =
      d.job_id.empty() ? std::filesystem::path(config.run.out_dir).filename().string() : d.job_id;
  if (o.job_id.empty()) o.job_id = "default";
  o.job_weight = d.job_weight;
  o.model_id = d.teacher_model_id;
  if (o.model_id.empty() && !d.teacher_weights.empty() && !d.coordinator.empty()) {
    // The id mkd-teacher reports for the same file.
    absl::StatusOr<std::string> bytes = ReadFile(d.teacher_weights);
    if (!bytes.ok()) return Annotate(bytes.status(), "config key 'distill.teacher_weights'");
    o.model_id = ModelIdOfWeights(d.teacher_weights, *bytes);
  }
  o.batch = static_cast<int>(config.data.batch_size);
  MKD_ASSIGN_OR_RETURN(int64_t kept, KeepCount(d.keep_ratio, config.model.num_patches()));
  o.kept = static_cast<int>(kept);
  o.max_teachers = d.max_teachers;
  o.pinned_micro_batches = d.micro_batches;
  o.rank = std::max(0, config.dist.rank);
  o.world_size = std::max(1, config.dist.world_size);
  o.tls = config.tls;
  if (!d.job_token_file.empty()) {
    MKD_ASSIGN_OR_RETURN(o.job_token, LoadJobToken(d.job_token_file, "distill.job_token_file"));
  }
  WarnIfInsecure(o.tls, "mkd-student");
  return MakeRemoteTeacher(o);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainConfig& config,
                                                         std::unique_ptr<Teacher> teacher) {
  MKD_ASSIGN_OR_RETURN(auto train,
                       OpenSplit(config.data, config.data.train_split, config.data.limit_train));
  MKD_ASSIGN_OR_RETURN(auto eval,
                       OpenSplit(config.data, config.data.eval_split, config.data.limit_eval));
  if (train->num_classes() != config.model.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat("config key 'model': num_classes is ",
                                                   config.model.num_classes, " but dataset ",
                                                   train->name(), " has ", train->num_classes()));
  }
  MKD_ASSIGN_OR_RETURN(torch::Device device,
                       ResolveDevice(config.run.device, "config key 'run.device'"));
  const Precision precision = config.run.precision;
  // Data parallel: meet the other ranks before anything registers with a
  // pool, so that a rank that cannot join fails alone and early.
  // One rank builds a group too when dist.backend is named (a one-rank
  // NCCL job on one GPU checks the NCCL path).
  std::unique_ptr<DataParallel> dp;
  if (config.dist.world_size > 1 ||
      (config.dist.world_size == 1 && config.dist.backend != "auto")) {
    DataParallelOptions o;
    o.rank = config.dist.rank;
    o.world_size = config.dist.world_size;
    o.master_addr = config.dist.master_addr;
    o.master_port = config.dist.master_port;
    o.backend = config.dist.backend;
    o.timeout = absl::Seconds(config.dist.timeout_s);
    o.bucket_bytes = static_cast<int64_t>(config.dist.bucket_mb * (1 << 20));
    o.device = device;
    MKD_ASSIGN_OR_RETURN(dp, DataParallel::Connect(o));
    std::printf("rank %d/%d: joined the job (%s, rendezvous at %s:%d)\n", o.rank, o.world_size,
                dp->backend().c_str(), o.master_addr.c_str(), o.master_port);
    std::fflush(stdout);
  }
  if (config.mode == "distill" && teacher == nullptr) {
    if (config.distill.teacher_address.empty() && config.distill.coordinator.empty()) {
      // On a GPU the teacher's weights take the reduced type outright (it
      // never trains); on the CPU it stays fp32, as before bf16 existed.
      const torch::Dtype teacher_dtype =
          device.is_cuda() ? PrecisionDtype(precision) : torch::kFloat32;
      MKD_ASSIGN_OR_RETURN(
          teacher, MakeInProcessTeacher(config.distill.teacher_model,
                                        config.distill.teacher_weights, device, teacher_dtype));
    } else {
      MKD_ASSIGN_OR_RETURN(teacher, MakeRemote(config));
    }
  }
  std::unique_ptr<Trainer> trainer(
      new Trainer(config, std::move(train), std::move(eval),
                  config.mode == "distill" ? std::move(teacher) : nullptr));
  trainer->device_ = device;
  trainer->precision_ = precision;
  if (dp) {
    trainer->rank_ = dp->rank();
    trainer->world_size_ = dp->world_size();
    trainer->dp_ = std::move(dp);
  }
  MKD_RETURN_IF_ERROR(trainer->Init());
  if (trainer->dp_) {
    // Same seed, same initial weights already; the broadcast makes sure.
    const std::vector<torch::Tensor> params = trainer->model_->parameters();
    MKD_RETURN_IF_ERROR(trainer->dp_->Broadcast(params));
    trainer->dp_->Attach(params);
  }
  return trainer;
}

Trainer::Trainer(const TrainConfig& config, std::unique_ptr<Dataset> train_data,
                 std::unique_ptr<Dataset> eval_data, std::unique_ptr<Teacher> teacher)
    : config_(config),
      train_data_(std::move(train_data)),
      eval_data_(std::move(eval_data)),
      teacher_(std::move(teacher)) {}

Trainer::~Trainer() {
  if (jsonl_ != nullptr) std::fclose(jsonl_);
}

absl::Status Trainer::Init() {
  torch::manual_seed(config_.seed);  // Initial weights and drop-path draws.
  // Built on the CPU, then moved: the same seed gives the same initial
  // weights on every device.
  MKD_RETURN_IF_ERROR(CatchTorch("building the student", [&] {
    model_ = VisionTransformer(config_.model);
    model_->to(device_);
    h2d_ = std::make_unique<HostToDevice>(device_);
  }));
  GradScalerOptions scaling;
  scaling.init_scale = config_.run.fp16_init_scale;
  scaler_ = std::make_unique<GradScaler>(precision_ == Precision::kFp16, scaling);
  optimizer_ = std::make_unique<AdamW>(model_->named_parameters(), config_.optim);

  LoaderOptions train;
  train.batch_size = config_.data.batch_size;
  train.workers = config_.data.workers;
  train.seed = config_.seed;
  train.rank = rank_;
  train.world_size = world_size_;
  train.transform = config_.data.transform;
  train.mix = config_.data.mix;
  MKD_ASSIGN_OR_RETURN(train_loader_, Loader::Create(train_data_.get(), train));
  LoaderOptions eval = train;
  eval.train = false;
  MKD_ASSIGN_OR_RETURN(eval_loader_, Loader::Create(eval_data_.get(), eval));

  steps_per_epoch_ = train_loader_->batches_per_epoch();
  if (steps_per_epoch_ < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key 'data.batch_size': ", config_.data.batch_size, " is larger than the ",
        train_loader_->samples_per_epoch(), " training examples"));
  }
  total_steps_ = steps_per_epoch_ * config_.optim.epochs;
  // Scaled by the step's whole batch: over all ranks.
  peak_lr_ = config_.optim.lr * static_cast<double>(config_.data.batch_size * world_size_) /
             config_.optim.lr_base_batch;

  if (teacher_) {
    const ViTConfig& t = teacher_->config();
    if (t.img_size != config_.model.img_size || t.in_chans != config_.model.in_chans) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config key 'distill.teacher_model': the teacher takes ", t.in_chans, "x", t.img_size,
          " images but the student gets ", config_.model.in_chans, "x", config_.model.img_size));
    }
    auto same = [](const std::vector<double>& a, const std::vector<double>& b) {
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i) {
        if (std::abs(a[i] - b[i]) > 1e-6) return false;  // ModelInfo carries floats.
      }
      return true;
    };
    if (!same(t.mean, config_.model.mean) || !same(t.std, config_.model.std)) {
      // The teacher is given the student's normalised pixels.
      return absl::InvalidArgumentError(
          "config key 'model': the student's mean/std differ from the teacher's; they must match");
    }
    if (t.num_classes != config_.model.num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("config key 'distill.teacher_model': the teacher has ", t.num_classes,
                       " classes, the student ", config_.model.num_classes));
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(config_.run.out_dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot create '", config_.run.out_dir, "': ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<StepResult> Trainer::Step(const Batch& batch) {
  Batch on_device;
  MKD_RETURN_IF_ERROR(CatchTorch("copying the batch", [&] { on_device = Unstage(Stage(batch)); }));
  MKD_ASSIGN_OR_RETURN(StepResult r, TrainStep(on_device));
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

Trainer::LossTerms Trainer::TrainForwardBackward(const Batch& batch) {
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
    PendingLogits teacher;
  };
  std::vector<Micro> micro(m);
  // Phase 1: every micro-batch's student forward, then its teacher request
  // goes out; the teacher works on micro-batch i while the student runs i+1.
  for (int64_t i = 0, start = 0; i < m; ++i) {
    Micro& mb = micro[i];
    mb.start = start;
    mb.rows = total / m + (i < total % m ? 1 : 0);
    start += mb.rows;
    torch::Tensor images = batch.images.narrow(0, mb.start, mb.rows);
    ViTOutput out;
    {
      AutocastGuard autocast(device_, precision_);
      out = model_->Forward(images, fo);
    }
    mb.logits = out.logits.to(torch::kFloat32);  // Losses in fp32 at any precision.
    MKD_ASSIGN_OR_RETURN(torch::Tensor idx, SelectForTeacher(images, out.saliency, k, gen));
    r->kept_tokens = idx.size(1);
    mb.teacher = teacher_->SubmitLogits(images, idx);
    r->flops += mb.rows * ViTForwardFlops(t, r->kept_tokens);
    r->flops_full += mb.rows * ViTForwardFlops(t, t.num_patches());
  }
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
    MKD_ASSIGN_OR_RETURN(torch::Tensor t_logits, AwaitLogits(mb.teacher, timeout * 2));
    const absl::Time answered = absl::Now();
    r->wait_s += absl::ToDoubleSeconds(answered - waiting);
    const double w = static_cast<double>(mb.rows) / total;
    DistillLossTerms terms;
    {
      AutocastGuard autocast(device_, precision_);
      // A remote teacher answers on the host; the loss runs on the device.
      terms = DistillLoss(mb.logits, t_logits.to(device_, torch::kFloat32),
                          batch.targets.narrow(0, mb.start, mb.rows), lo);
    }
    if (dp_ && &mb == &micro.back()) dp_->ArmHooks();  // The step's last backward.
    scaler_->Scale(terms.total * w).backward();
    terms_out.weights.push_back(w);
    terms_out.terms.push_back(
        torch::stack({terms.total.detach(), terms.ce.detach(), terms.kd.detach()}));
    backward_s += absl::ToDoubleSeconds(absl::Now() - answered);
  }
  r->timings.micro_batches = static_cast<int>(m);
  r->timings.forward_s = absl::ToDoubleSeconds(phase2 - phase1) / m;
  r->timings.backward_s = backward_s / m;
  r->timings.predicted_step_s = teacher_->PredictedStepSeconds();
  return terms_out;
}

int64_t Trainer::MicroBatchesNow(int64_t rows) const {
  int64_t m = config_.distill.micro_batches;
  if (m <= 0) m = teacher_->PlannedMicroBatches();
  return std::clamp<int64_t>(m, 1, rows);
}

absl::StatusOr<StepResult> Trainer::TrainStep(const Batch& batch) {
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
  MKD_RETURN_IF_ERROR(CatchTorch("train step", [&] {
    optimizer_->ZeroGrad();
    LossTerms terms;
    if (teacher_) {
      absl::StatusOr<LossTerms> d = DistillForwardBackward(batch, &r);
      inner = d.status();
      if (!inner.ok()) return;
      terms = std::move(*d);
    } else {
      terms = TrainForwardBackward(batch);
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
  }));
  MKD_RETURN_IF_ERROR(inner);
  if (teacher_) {
    r.timings.step = step_ + 1;
    r.timings.step_s = absl::ToDoubleSeconds(absl::Now() - started);
    r.timings.images_per_s = batch.images.size(0) / std::max(r.timings.step_s, 1e-9);
    teacher_->ReportStep(r.timings);  // For the pool's planner.
  }
  if (!std::isfinite(r.loss)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "loss is ", r.loss, " at step ", step_, "; lower optim.lr or set optim.clip_grad_norm"));
  }
  return r;
}

}  // namespace mkd::student
