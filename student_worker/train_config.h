// The student worker's configuration: one plain struct per section, with
// defaults in the declarations (DeiT/MaskedKD recipe where it applies),
// loaded from YAML plus `--set section.key=value` overrides. Unknown keys
// and ill-typed values are errors that name the dotted key. Named choices
// (criterion, kind, saliency, precision) are parsed into enums once, here.
#ifndef MKD_STUDENT_WORKER_TRAIN_CONFIG_H_
#define MKD_STUDENT_WORKER_TRAIN_CONFIG_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data_plane_kind.h"
#include "common/device.h"
#include "common/dtype.h"
#include "common/losses.h"
#include "common/masking.h"
#include "common/tls_options.h"
#include "common/vit_config.h"
#include "common/vit_layers.h"
#include "student_worker/transforms.h"

namespace mkd::student {

struct DataConfig {
  std::string kind = "fashion_mnist";  // fashion_mnist | mnist | cifar10 | image_folder
  std::string dir;                     // Empty: Debian's Fashion-MNIST.
  std::string train_split = "train";
  std::string eval_split = "test";
  int64_t batch_size = 128;
  int workers = 2;
  int64_t limit_train = 0;  // Use only the first N training examples (0: all).
  int64_t limit_eval = 0;
  // Train mode: each step shows the model a random share of its patches,
  // drawn uniformly in [token_keep_min, 1], random patches per image; 1: off.
  // A teacher trained so is used to seeing part of an image, as MaskedKD
  // shows it. Distill mode needs 1 (the student's attention is over all).
  double token_keep_min = 1.0;
  TransformConfig transform;  // img_size/channels/mean/std come from the model.
  MixConfig mix;
};

struct OptimConfig {
  int epochs = 10;
  double lr = 5e-4;  // At batch lr_base_batch; scaled linearly by batch size.
  int64_t lr_base_batch = 512;
  double weight_decay = 0.05;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double warmup_epochs = 5;
  double warmup_lr = 1e-6;
  double min_lr = 1e-5;
  double clip_grad_norm = 0.0;  // 0: off.
};

struct DistillConfig {
  std::string teacher_model;    // Preset or model YAML.
  std::string teacher_weights;  // safetensors.
  MaskCriterion criterion = MaskCriterion::kStudentTopk;
  double keep_ratio = 0.5;
  std::optional<double> keep_ratio_end;  // Linear schedule to this ratio, if set.
  // With a top-k criterion: this share of the k kept patches is drawn at
  // random from the rest instead (see SelectTopkMixed); 0: pure top-k.
  double random_share = 0.0;
  double alpha = 0.5;
  double tau = 1.0;
  KdKind kind = KdKind::kSoft;                     // soft | hard
  SaliencyMode saliency = SaliencyMode::kAllKeys;  // all_keys (authors' code) | patch_keys (paper)
  // Where the teacher runs: "" in this process (teacher_weights), or the
  // host:port of an mkd-teacher server (teacher_model/weights unused).
  std::string teacher_address;
  // Or a pool: the host:port of mkd-coordinator, which assigns teachers.
  std::string coordinator;
  // The model the job needs from the pool; "": the id of teacher_weights
  // ("<stem>@<digest>", what mkd-teacher reports for that file).
  std::string teacher_model_id;
  double job_weight = 1;         // Share of the pool relative to other jobs.
  int max_teachers = 0;          // Teachers the pool may give the job; 0: any.
  int64_t teacher_wait_s = 600;  // Wait this long for a teacher of the model.
  // Micro-batches per step (> 1 overlaps student and teacher work); 0: the
  // pool plans it (1 without a pool).
  int micro_batches = 0;
  DType wire_dtype = DType::kF16;  // Kept patches on the wire: fp32 | fp16 | bf16.
  // How kept patches and logits travel (common/data_plane_kind.h): auto
  // (shared memory with a teacher on this host, else gRPC bytes) | grpc |
  // shm (shared memory or fail, saying why).
  DataPlaneKind data_plane = DataPlaneKind::kAuto;
  // Each shm stream's region, allocated in /dev/shm up front.
  int64_t shm_region_mb = 64;
  // Per micro-batch answer, and how long an unreachable teacher is waited for.
  int64_t teacher_timeout_ms = 60000;
  std::string job_id;  // Server-side fair-share unit; "": run.out_dir's name.
  // A file holding the job's token (`mkd job-token`), for teachers that
  // require one; "": none. A file, so the token stays out of argv and logs.
  std::string job_token_file;
};

struct RunConfig {
  std::string out_dir = "runs/default";
  int eval_every_epochs = 1;
  int64_t log_every_steps = 50;
  int64_t checkpoint_every_steps = 0;  // 0: at the end of each epoch only.
  int keep_checkpoints = 2;
  int threads = 0;  // 0: one per core.
  // cpu, cuda (GPU 0) or cuda:N. Model, optimizer state, batches, the
  // in-process teacher and evaluation all live there.
  std::string device = "cpu";
  // fp32, or bf16/fp16: forward passes and losses under LibTorch's autocast
  // for the device (matmuls in the reduced type, reductions in fp32);
  // weights and optimizer stay fp32. fp16 (CUDA only) scales the loss and
  // skips steps whose gradients overflow; bf16 needs no scaling.
  DType precision = DType::kF32;
  double fp16_init_scale = 65536.0;  // fp16's initial loss scale (2^16, as torch.amp).
  int64_t max_steps = 0;             // Stop after this many steps (0: run all epochs).
  std::string metrics_listen;        // host:port for /metrics ("": none).
};

// Data parallelism: one job as several ranks (student_worker/data_parallel.h).
// Each key left at its default is taken from the environment that
// torchrun and Kubeflow's PyTorchJob set (ResolveDistEnv, dist_env.h).
struct DistConfig {
  int world_size = 0;            // 0: $WORLD_SIZE, else 1.
  int rank = -1;                 // -1: $RANK, else 0.
  std::string master_addr;       // Rank 0's TCPStore host; "": $MASTER_ADDR, else 127.0.0.1.
  int master_port = 0;           // 0: $MASTER_PORT, else 29500.
  int local_rank = -1;           // -1: $LOCAL_RANK, else 0 (run.device cuda -> cuda:local_rank).
  std::string backend = "auto";  // auto (nccl on CUDA if built, else gloo) | gloo | nccl.
  // A peer that neither answers nor closes its connections for this long
  // fails the collective waiting on it; a peer that exits fails it at once.
  int64_t timeout_s = 60;
  double bucket_mb = 25;  // Gradients are all-reduced in buckets of about this size.
};

struct TrainConfig {
  std::string mode = "train";  // train | distill
  uint64_t seed = 0;
  std::string model_spec = "deit_tiny_patch16_224";  // `model:` as given (preset or YAML path).
  ViTConfig model;
  DataConfig data;
  OptimConfig optim;
  DistillConfig distill;
  RunConfig run;
  DistConfig dist;
  // tls.*: the remote teacher's and the coordinator's channels (mutual
  // TLS, or tls.insecure explicitly); unused with an in-process teacher.
  TlsOptions tls;
};

// Parses YAML text, then applies `overrides` ("section.key=value", values
// parsed as YAML; `model.<key>=...` edits the model config), then validates.
// Relative paths are relative to the working directory.
absl::StatusOr<TrainConfig> ParseTrainConfig(const std::string& yaml_text,
                                             const std::vector<std::string>& overrides);

// The job's id in the pool and on its metrics: distill.job_id, else
// run.out_dir's last component, else "default".
std::string JobIdOf(const TrainConfig& config);

// ReadFile + ParseTrainConfig; messages name the file.
absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path,
                                            const std::vector<std::string>& overrides);

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_TRAIN_CONFIG_H_
