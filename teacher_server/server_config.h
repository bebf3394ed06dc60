// mkd-teacher's configuration: one plain struct with defaults in the
// declaration, loaded from YAML (+ --set overrides) and validated; an error
// names the offending key. Torch-free.
#ifndef MKD_TEACHER_SERVER_SERVER_CONFIG_H_
#define MKD_TEACHER_SERVER_SERVER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/auth_options.h"
#include "common/dtype.h"
#include "common/tls_options.h"
#include "common/vit_config.h"

namespace mkd::teacher {

struct BatcherConfig {
  // Sum of b*(k+1) per forward pass; 0: the device's default (16384 on the
  // CPU, 65536 on CUDA, where bigger batches use the GPU better).
  int64_t max_tokens_per_batch = 0;
  // How long work may wait for company; -1: the device's default (2000 us
  // on the CPU; 1000 us on CUDA, where a forward pass takes milliseconds).
  int64_t max_queue_delay_us = -1;
  int64_t max_queued = 512;  // Micro-batches waiting, all jobs.
  int64_t max_queued_per_job = 128;
  // A job back within this long of its queue running empty keeps its place
  // in the fair-share order (a training job's queue empties between steps).
  int64_t fair_share_grace_ms = 1000;
};

// What one client or one job may hold of this teacher (0: no limit). Each
// refusal is counted in mkd_teacher_limit_refusals_total{limit}.
struct LimitsConfig {
  // Open Distill streams from one client host (the peer's address without
  // its port); a stream over it ends at once with RESOURCE_EXHAUSTED.
  int64_t max_streams_per_client = 64;
  // Open Distill streams carrying one job (a stream belongs to the job of
  // its first micro-batch); over it, RESOURCE_EXHAUSTED ends the stream.
  int64_t max_streams_per_job = 32;
  // Micro-batches of one job accepted and not yet answered, over all its
  // streams; one over it is answered RESOURCE_EXHAUSTED (clients retry).
  int64_t max_in_flight_per_job = 256;
  // A stream with nothing in flight that sends nothing for this long is
  // ended with DEADLINE_EXCEEDED (its client reconnects when it needs to).
  int64_t idle_stream_timeout_s = 600;
  // The largest shared-memory region a student on this host may offer for
  // a stream (the shm data plane); 0 turns the plane off here (students
  // then send bytes over gRPC).
  int64_t max_shm_region_mb = 1024;
};

struct TeacherServerConfig {
  ViTConfig model;
  std::string model_spec;      // `model:` as given (preset, YAML path, "inline").
  std::string weights;         // safetensors (required).
  std::string model_id;        // Reported in ModelInfo; default: spec + weights hash.
  std::string device = "cpu";  // cpu | cuda | cuda:N
  // torch (the model) | echo: canned zero logits at once, no forward pass
  // (for benchmarks of the data path only: a stand-in for a teacher on
  // hardware of its own; never for training).
  std::string engine = "torch";
  DType dtype = DType::kF32;                    // fp32 | bf16 | fp16 (compute dtype)
  int threads = 0;                              // Intra-op threads; 0: one per core.
  std::string listen = "0.0.0.0:50051";         // gRPC; port 0 picks a free one.
  std::string metrics_listen = "0.0.0.0:9464";  // /metrics; "" turns it off.
  int64_t max_micro_batch_images = 256;         // b per request.
  int64_t max_message_bytes = 64 << 20;         // gRPC receive limit.
  // Answers remembered per job for repeated ids (a client re-sends at most
  // its unanswered micro-batches; each answer holds b x classes floats).
  int64_t dedup_window = 64;
  // Seconds after which an idle job's per-job state is dropped (a
  // long-running pool serves many jobs; finished ones must not pile up).
  // Longer than any client's reconnect window, so a re-sent id still hits.
  int64_t job_idle_s = 600;
  // The pool: the coordinator's host:port ("" serves alone, as before).
  std::string coordinator;
  // The host students should dial, as the pool advertises it; "" takes
  // listen's host, or 127.0.0.1 when that is a wildcard (0.0.0.0, [::]).
  std::string advertise_host;
  // Kept tokens per second this teacher computes, as the pool's
  // assignment weighs it; 0 measures it at start-up with a few forwards.
  double capacity_tokens_per_s = 0;
  BatcherConfig batcher;
  LimitsConfig limits;
  // tls.*: for the server and for the coordinator's channel; mutual TLS,
  // or tls.insecure explicitly.
  TlsOptions tls;
  // auth.*: the pool secret (a Distill stream then needs its job's token,
  // and the teacher signs its own to join the pool), or auth.insecure.
  AuthOptions auth;
};

// `c` with its device-dependent defaults (0 / -1 above) filled in.
BatcherConfig ResolveBatcherDefaults(BatcherConfig c, bool cuda);

// Parses YAML text with "key=value" overrides; kInvalidArgument naming the
// key on unknown, ill-typed or out-of-range values.
absl::StatusOr<TeacherServerConfig> ParseTeacherServerConfig(
    const std::string& yaml_text, const std::vector<std::string>& overrides);

// Reads `path` and parses it; errors are prefixed with the path.
absl::StatusOr<TeacherServerConfig> LoadTeacherServerConfig(
    const std::string& path, const std::vector<std::string>& overrides);

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_SERVER_CONFIG_H_
