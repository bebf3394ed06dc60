// Trainer: building one from its config (datasets, device, teacher, the
// data-parallel group, model, optimizer, loaders).
#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/tensor_util.h"
#include "student_worker/trainer.h"

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

}  // namespace

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainConfig& config,
                                                         std::unique_ptr<client::Teacher> teacher,
                                                         const RemoteTeacherFactory& remote) {
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
  const DType precision = config.run.precision;
  // Data parallel: meet the other ranks before anything registers with a
  // pool, so that a rank that cannot join fails alone and early.
  // One rank builds a group too when dist.backend is named (a one-rank
  // NCCL job on one GPU checks the NCCL path).
  std::unique_ptr<DataParallel> dp;
  if (config.dist.world_size > 1 ||
      (config.dist.world_size == 1 && config.dist.backend != "auto")) {
    if (config.dist.rank < 0 || config.dist.master_port <= 0) {
      return absl::InvalidArgumentError(
          "config key 'dist': rank and master_port must be resolved first (ResolveDistEnv)");
    }
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
    MKD_LOG(INFO) << "rank " << o.rank << "/" << o.world_size << ": joined the job ("
                  << dp->backend() << ", rendezvous at " << o.master_addr << ":" << o.master_port
                  << ")";
  }
  if (config.mode == "distill" && teacher == nullptr) {
    if (config.distill.teacher_address.empty() && config.distill.coordinator.empty()) {
      // On a GPU the teacher's weights take the reduced type outright (it
      // never trains); on the CPU it stays fp32, as before bf16 existed.
      const torch::Dtype teacher_dtype = device.is_cuda() ? TorchDtype(precision) : torch::kFloat32;
      MKD_ASSIGN_OR_RETURN(teacher, client::MakeInProcessTeacher(config.distill.teacher_model,
                                                                 config.distill.teacher_weights,
                                                                 device, teacher_dtype));
    } else if (remote) {
      MKD_ASSIGN_OR_RETURN(teacher, remote(config));
    } else {
      return absl::InvalidArgumentError(
          "config keys 'distill.teacher_address'/'distill.coordinator': a remote teacher needs "
          "the teacher client (teacher_client/job_teacher.h), which this program does not pass");
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
                 std::unique_ptr<Dataset> eval_data, std::unique_ptr<client::Teacher> teacher)
    : config_(config),
      train_data_(std::move(train_data)),
      eval_data_(std::move(eval_data)),
      teacher_(std::move(teacher)),
      session_(teacher_ ? teacher_->session() : nullptr) {}

Trainer::~Trainer() = default;

absl::Status Trainer::Init() {
  torch::manual_seed(config_.seed);  // Initial weights and drop-path draws.
  // Built on the CPU, then moved: the same seed gives the same initial
  // weights on every device.
  MKD_RETURN_IF_ERROR(CatchTorch("building the student", [&] {
    model_ = VisionTransformer(config_.model);
    model_->to(device_);
    h2d_ = std::make_unique<HostToDevice>(device_);
    timer_ = std::make_unique<DeviceTimer>(device_);
  }));
  GradScalerOptions scaling;
  scaling.init_scale = config_.run.fp16_init_scale;
  scaler_ = std::make_unique<GradScaler>(precision_ == DType::kF16, scaling);
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

}  // namespace mkd::student
