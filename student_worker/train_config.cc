#include "student_worker/train_config.h"

#include <filesystem>
#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config_yaml.h"
#include "common/device.h"
#include "common/file_util.h"
#include "common/losses.h"
#include "common/masking.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"

namespace mkd::student {
namespace {

constexpr char kWhat[] = "config";

using Setter = ConfigSetter<TrainConfig>;

#define MKD_FIELD(type, path, type_name) \
  ConfigField<TrainConfig, type>([](TrainConfig& c) -> type& { return c.path; }, kWhat, type_name)
#define MKD_ENUM(type, path, parse) \
  ConfigEnumField<TrainConfig, type>([](TrainConfig& c) -> type& { return c.path; }, kWhat, parse)

const std::map<std::string, Setter>& Setters() {
  static const auto* setters = [] {
    auto* s = new std::map<std::string, Setter>{
        {"mode", MKD_FIELD(std::string, mode, "train or distill")},
        {"seed", MKD_FIELD(uint64_t, seed, "a non-negative integer")},
        {"data.kind", MKD_FIELD(std::string, data.kind, "a dataset kind")},
        {"data.dir", MKD_FIELD(std::string, data.dir, "a path")},
        {"data.train_split", MKD_FIELD(std::string, data.train_split, "a split name")},
        {"data.eval_split", MKD_FIELD(std::string, data.eval_split, "a split name")},
        {"data.batch_size", MKD_FIELD(int64_t, data.batch_size, "an integer")},
        {"data.workers", MKD_FIELD(int, data.workers, "an integer")},
        {"data.limit_train", MKD_FIELD(int64_t, data.limit_train, "an integer")},
        {"data.limit_eval", MKD_FIELD(int64_t, data.limit_eval, "an integer")},
        {"data.token_keep_min", MKD_FIELD(double, data.token_keep_min, "a number")},
        {"data.random_resized_crop",
         MKD_FIELD(bool, data.transform.random_resized_crop, "true or false")},
        {"data.rrc_min_scale", MKD_FIELD(double, data.transform.rrc_min_scale, "a number")},
        {"data.pad_crop", MKD_FIELD(int, data.transform.pad_crop, "an integer")},
        {"data.hflip", MKD_FIELD(bool, data.transform.hflip, "true or false")},
        {"data.randaugment_ops", MKD_FIELD(int, data.transform.randaugment_ops, "an integer")},
        {"data.randaugment_magnitude",
         MKD_FIELD(double, data.transform.randaugment_magnitude, "a number")},
        {"data.random_erasing", MKD_FIELD(double, data.transform.random_erasing, "a number")},
        {"data.crop_pct", MKD_FIELD(double, data.transform.crop_pct, "a number")},
        {"data.mixup_alpha", MKD_FIELD(double, data.mix.mixup_alpha, "a number")},
        {"data.cutmix_alpha", MKD_FIELD(double, data.mix.cutmix_alpha, "a number")},
        {"data.mix_prob", MKD_FIELD(double, data.mix.prob, "a number")},
        {"data.mix_switch_prob", MKD_FIELD(double, data.mix.switch_prob, "a number")},
        {"data.label_smoothing", MKD_FIELD(double, data.mix.label_smoothing, "a number")},
        {"optim.epochs", MKD_FIELD(int, optim.epochs, "an integer")},
        {"optim.lr", MKD_FIELD(double, optim.lr, "a number")},
        {"optim.lr_base_batch", MKD_FIELD(int64_t, optim.lr_base_batch, "an integer")},
        {"optim.weight_decay", MKD_FIELD(double, optim.weight_decay, "a number")},
        {"optim.beta1", MKD_FIELD(double, optim.beta1, "a number")},
        {"optim.beta2", MKD_FIELD(double, optim.beta2, "a number")},
        {"optim.eps", MKD_FIELD(double, optim.eps, "a number")},
        {"optim.warmup_epochs", MKD_FIELD(double, optim.warmup_epochs, "a number")},
        {"optim.warmup_lr", MKD_FIELD(double, optim.warmup_lr, "a number")},
        {"optim.min_lr", MKD_FIELD(double, optim.min_lr, "a number")},
        {"optim.clip_grad_norm", MKD_FIELD(double, optim.clip_grad_norm, "a number")},
        {"distill.teacher_model",
         MKD_FIELD(std::string, distill.teacher_model, "a preset or path")},
        {"distill.teacher_weights", MKD_FIELD(std::string, distill.teacher_weights, "a path")},
        {"distill.criterion", MKD_ENUM(MaskCriterion, distill.criterion, ParseMaskCriterion)},
        {"distill.keep_ratio", MKD_FIELD(double, distill.keep_ratio, "a number")},
        {"distill.keep_ratio_end",
         [](const YAML::Node& n, const std::string& key, TrainConfig& c) -> absl::Status {
           if (n.IsNull()) {
             c.distill.keep_ratio_end.reset();
             return absl::OkStatus();
           }
           MKD_ASSIGN_OR_RETURN(c.distill.keep_ratio_end,
                                YamlScalar<double>(n, kWhat, key, "a number"));
           return absl::OkStatus();
         }},
        {"distill.random_share", MKD_FIELD(double, distill.random_share, "a number")},
        {"distill.alpha", MKD_FIELD(double, distill.alpha, "a number")},
        {"distill.tau", MKD_FIELD(double, distill.tau, "a number")},
        {"distill.kind", MKD_ENUM(KdKind, distill.kind, ParseKdKind)},
        {"distill.saliency", MKD_ENUM(SaliencyMode, distill.saliency, ParseSaliencyMode)},
        {"distill.teacher_address", MKD_FIELD(std::string, distill.teacher_address, "host:port")},
        {"distill.micro_batches", MKD_FIELD(int, distill.micro_batches, "an integer")},
        {"distill.coordinator", MKD_FIELD(std::string, distill.coordinator, "host:port")},
        {"distill.teacher_model_id",
         MKD_FIELD(std::string, distill.teacher_model_id, "a model id")},
        {"distill.job_weight", MKD_FIELD(double, distill.job_weight, "a number")},
        {"distill.max_teachers", MKD_FIELD(int, distill.max_teachers, "an integer")},
        {"distill.teacher_wait_s", MKD_FIELD(int64_t, distill.teacher_wait_s, "an integer")},
        {"distill.wire_dtype", MKD_ENUM(DType, distill.wire_dtype, ParseFloatTypeName)},
        {"distill.data_plane", MKD_ENUM(DataPlaneKind, distill.data_plane, ParseDataPlaneKind)},
        {"distill.shm_region_mb", MKD_FIELD(int64_t, distill.shm_region_mb, "an integer")},
        {"distill.teacher_timeout_ms",
         MKD_FIELD(int64_t, distill.teacher_timeout_ms, "an integer")},
        {"distill.job_id", MKD_FIELD(std::string, distill.job_id, "a string")},
        {"distill.job_token_file", MKD_FIELD(std::string, distill.job_token_file, "a path")},
        {"run.out_dir", MKD_FIELD(std::string, run.out_dir, "a path")},
        {"run.eval_every_epochs", MKD_FIELD(int, run.eval_every_epochs, "an integer")},
        {"run.log_every_steps", MKD_FIELD(int64_t, run.log_every_steps, "an integer")},
        {"run.checkpoint_every_steps",
         MKD_FIELD(int64_t, run.checkpoint_every_steps, "an integer")},
        {"run.keep_checkpoints", MKD_FIELD(int, run.keep_checkpoints, "an integer")},
        {"run.threads", MKD_FIELD(int, run.threads, "an integer")},
        {"run.device", MKD_FIELD(std::string, run.device, "cpu, cuda or cuda:N")},
        {"run.precision", MKD_ENUM(DType, run.precision, ParseFloatTypeName)},
        {"run.fp16_init_scale", MKD_FIELD(double, run.fp16_init_scale, "a number")},
        {"run.max_steps", MKD_FIELD(int64_t, run.max_steps, "an integer")},
        {"run.metrics_listen", MKD_FIELD(std::string, run.metrics_listen, "host:port")},
        {"dist.world_size", MKD_FIELD(int, dist.world_size, "an integer")},
        {"dist.rank", MKD_FIELD(int, dist.rank, "an integer")},
        {"dist.master_addr", MKD_FIELD(std::string, dist.master_addr, "a host name or address")},
        {"dist.master_port", MKD_FIELD(int, dist.master_port, "an integer")},
        {"dist.local_rank", MKD_FIELD(int, dist.local_rank, "an integer")},
        {"dist.backend", MKD_FIELD(std::string, dist.backend, "auto, gloo or nccl")},
        {"dist.timeout_s", MKD_FIELD(int64_t, dist.timeout_s, "an integer")},
        {"dist.bucket_mb", MKD_FIELD(double, dist.bucket_mb, "a number")},
    };
    AddTlsConfigKeys<TrainConfig>([](TrainConfig& c) -> TlsOptions& { return c.tls; }, kWhat,
                                  /*server=*/false, s);
    return s;
  }();
  return *setters;
}

#undef MKD_FIELD
#undef MKD_ENUM

// Checks `c` and changes nothing (each error names the key it is about).
absl::Status Validate(const TrainConfig& c) {
  auto bad = [](const char* key, absl::string_view why) { return ConfigKeyError(kWhat, key, why); };
  if (c.mode != "train" && c.mode != "distill") return bad("mode", "must be train or distill");
  if (c.data.batch_size < 1) return bad("data.batch_size", "must be positive");
  if (c.data.workers < 1) return bad("data.workers", "must be >= 1");
  if (c.data.limit_train < 0) return bad("data.limit_train", "must be >= 0");
  if (c.data.limit_eval < 0) return bad("data.limit_eval", "must be >= 0");
  if (c.optim.epochs < 1) return bad("optim.epochs", "must be >= 1");
  if (!(c.optim.lr > 0)) return bad("optim.lr", "must be positive");
  if (c.optim.lr_base_batch < 1) return bad("optim.lr_base_batch", "must be positive");
  if (c.optim.weight_decay < 0) return bad("optim.weight_decay", "must be >= 0");
  if (!(c.optim.beta1 >= 0 && c.optim.beta1 < 1)) return bad("optim.beta1", "must be in [0, 1)");
  if (!(c.optim.beta2 >= 0 && c.optim.beta2 < 1)) return bad("optim.beta2", "must be in [0, 1)");
  if (!(c.optim.eps > 0)) return bad("optim.eps", "must be positive");
  if (c.optim.warmup_epochs < 0) return bad("optim.warmup_epochs", "must be >= 0");
  if (c.optim.min_lr < 0) return bad("optim.min_lr", "must be >= 0");
  if (c.optim.warmup_lr < 0) return bad("optim.warmup_lr", "must be >= 0");
  if (c.optim.clip_grad_norm < 0) return bad("optim.clip_grad_norm", "must be >= 0");
  if (!(c.data.mix.label_smoothing >= 0 && c.data.mix.label_smoothing < 1)) {
    return bad("data.label_smoothing", "must be in [0, 1)");
  }
  if (c.data.mix.mixup_alpha < 0) return bad("data.mixup_alpha", "must be >= 0");
  if (c.data.mix.cutmix_alpha < 0) return bad("data.cutmix_alpha", "must be >= 0");
  if (c.run.log_every_steps < 1) return bad("run.log_every_steps", "must be positive");
  if (c.run.eval_every_epochs < 0) return bad("run.eval_every_epochs", "must be >= 0");
  if (c.run.keep_checkpoints < 1) return bad("run.keep_checkpoints", "must be >= 1");
  if (c.run.checkpoint_every_steps < 0) return bad("run.checkpoint_every_steps", "must be >= 0");
  if (c.run.max_steps < 0) return bad("run.max_steps", "must be >= 0 (0: run all epochs)");
  if (c.run.out_dir.empty()) return bad("run.out_dir", "must not be empty");
  if (!c.run.metrics_listen.empty() && !IsHostPort(c.run.metrics_listen)) {
    return bad("run.metrics_listen", "expected host:port or \"\"");
  }
  // Whether the device exists is the trainer's question (it depends on the
  // machine, not the file); the name's form is checked here.
  if (c.run.device != "cpu" && c.run.device != "cuda" && c.run.device.rfind("cuda:", 0) != 0) {
    return bad("run.device", absl::StrCat("must be cpu, cuda or cuda:N, got '", c.run.device, "'"));
  }
  if (c.run.precision == DType::kF16 && c.run.device == "cpu") {
    return bad("run.precision",
               "fp16 needs run.device cuda (LibTorch's CPU autocast has bf16 only)");
  }
  if (!(c.run.fp16_init_scale >= 1)) return bad("run.fp16_init_scale", "must be >= 1");
  if (c.dist.world_size < 0) return bad("dist.world_size", "must be >= 0 (0: $WORLD_SIZE)");
  if (c.dist.rank < -1) return bad("dist.rank", "must be >= -1 (-1: $RANK)");
  if (c.dist.world_size > 0 && c.dist.rank >= c.dist.world_size) {
    return bad("dist.rank", absl::StrCat("must be below dist.world_size ", c.dist.world_size));
  }
  if (c.dist.master_port < 0 || c.dist.master_port > 65535) {
    return bad("dist.master_port", "must be in [0, 65535] (0: $MASTER_PORT)");
  }
  if (c.dist.local_rank < -1) return bad("dist.local_rank", "must be >= -1 (-1: $LOCAL_RANK)");
  if (c.dist.backend != "auto" && c.dist.backend != "gloo" && c.dist.backend != "nccl") {
    return bad("dist.backend",
               absl::StrCat("must be auto, gloo or nccl, got '", c.dist.backend, "'"));
  }
  if (c.dist.timeout_s < 1) return bad("dist.timeout_s", "must be positive");
  if (!(c.dist.bucket_mb > 0)) return bad("dist.bucket_mb", "must be positive");
  absl::Status st = ValidateTransformConfig(c.data.transform);
  if (!st.ok()) return bad("data", st.message());
  if (!(c.data.token_keep_min > 0 && c.data.token_keep_min <= 1)) {
    return bad("data.token_keep_min", "must be in (0, 1] (1: every patch)");
  }
  if (c.mode != "distill") return absl::OkStatus();
  if (c.data.token_keep_min != 1) {
    return bad("data.token_keep_min",
               "applies to mode train only (a distilling student sees every patch)");
  }
  const bool remote = !c.distill.teacher_address.empty() || !c.distill.coordinator.empty();
  if (!c.distill.teacher_address.empty() && !c.distill.coordinator.empty()) {
    return bad("distill.coordinator", "set either it or distill.teacher_address, not both");
  }
  if (!remote) {
    if (c.distill.teacher_model.empty())
      return bad("distill.teacher_model", "is required in distill mode");
    if (c.distill.teacher_weights.empty())
      return bad("distill.teacher_weights", "is required in distill mode");
  } else if (!c.distill.teacher_address.empty() && !IsHostPort(c.distill.teacher_address)) {
    return bad("distill.teacher_address", "expected host:port");
  } else if (!c.distill.coordinator.empty() && !IsHostPort(c.distill.coordinator)) {
    return bad("distill.coordinator", "expected host:port");
  } else if (c.distill.criterion == MaskCriterion::kTeacherTopk) {
    return bad("distill.criterion",
               "teacher_topk needs an in-process teacher (a remote one sends no attention)");
  }
  if (!c.distill.coordinator.empty() && c.distill.teacher_model_id.empty() &&
      c.distill.teacher_weights.empty()) {
    return bad("distill.teacher_model_id",
               "is required with a coordinator (or give distill.teacher_weights to derive it)");
  }
  if (!(c.distill.job_weight > 0 && c.distill.job_weight <= 1000)) {
    return bad("distill.job_weight", "must be in (0, 1000]");
  }
  if (c.distill.max_teachers < 0) return bad("distill.max_teachers", "must be >= 0 (0: any)");
  if (c.distill.teacher_wait_s < 0) return bad("distill.teacher_wait_s", "must be >= 0");
  if (c.distill.micro_batches < 0 || c.distill.micro_batches > c.data.batch_size) {
    return bad("distill.micro_batches", "must be in [0, data.batch_size] (0: planned)");
  }
  if (c.distill.teacher_timeout_ms < 1)
    return bad("distill.teacher_timeout_ms", "must be positive");
  if (c.distill.shm_region_mb < 1 || c.distill.shm_region_mb > 65536)
    return bad("distill.shm_region_mb", "must be in [1, 65536]");
  if (!(c.distill.keep_ratio > 0 && c.distill.keep_ratio <= 1))
    return bad("distill.keep_ratio", "must be in (0, 1]");
  if (c.distill.keep_ratio_end &&
      !(*c.distill.keep_ratio_end > 0 && *c.distill.keep_ratio_end <= 1)) {
    return bad("distill.keep_ratio_end", "must be in (0, 1]");
  }
  if (!(c.distill.random_share >= 0 && c.distill.random_share < 1)) {
    return bad("distill.random_share", "must be in [0, 1)");
  }
  if (c.distill.random_share > 0 && c.distill.criterion != MaskCriterion::kStudentTopk &&
      c.distill.criterion != MaskCriterion::kTeacherTopk) {
    return bad("distill.random_share", "needs criterion student_topk or teacher_topk");
  }
  if (!(c.distill.alpha >= 0 && c.distill.alpha <= 1))
    return bad("distill.alpha", "must be in [0, 1]");
  if (!(c.distill.tau > 0)) return bad("distill.tau", "must be positive");
  // Checked last: a config with another mistake hears about that first.
  if (remote && c.mode == "distill") {
    absl::Status tls = ValidateTls(c.tls, TlsRole::kClient, "tls.");
    if (!tls.ok()) return absl::InvalidArgumentError(absl::StrCat(kWhat, ": ", tls.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrainConfig> ParseTrainConfig(const std::string& yaml_text,
                                             const std::vector<std::string>& overrides) {
  MKD_ASSIGN_OR_RETURN(auto flat, FlattenConfig(yaml_text, overrides, {"model"}));

  TrainConfig config;
  MKD_ASSIGN_OR_RETURN(config.model,
                       ModelFromConfigNode(flat["model"], kWhat, "model", &config.model_spec));
  MKD_RETURN_IF_ERROR(ApplyConfigKeys(flat, Setters(), kWhat, "model", config));
  // The data pipeline produces what the model eats.
  config.data.transform.img_size = config.model.img_size;
  config.data.transform.channels = config.model.in_chans;
  config.data.transform.mean = config.model.mean;
  config.data.transform.std = config.model.std;
  MKD_RETURN_IF_ERROR(Validate(config));
  return config;
}

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path,
                                            const std::vector<std::string>& overrides) {
  MKD_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto config = ParseTrainConfig(text, overrides);
  if (!config.ok()) return Annotate(config.status(), path);
  return config;
}

std::string JobIdOf(const TrainConfig& config) {
  if (!config.distill.job_id.empty()) return config.distill.job_id;
  std::string id = std::filesystem::path(config.run.out_dir).filename().string();
  return id.empty() ? "default" : id;
}

}  // namespace mkd::student
