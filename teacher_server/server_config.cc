#include "teacher_server/server_config.h"

#include <cstdint>
#include <functional>
#include <limits>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config_yaml.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"
#include "rpc/pool_auth.h"

namespace mkd::teacher {
namespace {

constexpr char kWhat[] = "teacher config";

using Setter = ConfigSetter<TeacherServerConfig>;

#define MKD_FIELD(type, path, type_name)                                                         \
  ConfigField<TeacherServerConfig, type>([](TeacherServerConfig& c) -> type& { return c.path; }, \
                                         kWhat, type_name)

const std::map<std::string, Setter>& Setters() {
  static const auto* setters = [] {
    auto* s = new std::map<std::string, Setter>{
        {"weights", MKD_FIELD(std::string, weights, "a path")},
        {"model_id", MKD_FIELD(std::string, model_id, "a string")},
        {"device", MKD_FIELD(std::string, device, "cpu, cuda or cuda:N")},
        {"engine", MKD_FIELD(std::string, engine, "torch or echo")},
        {"dtype",
         ConfigEnumField<TeacherServerConfig, DType>(
             [](TeacherServerConfig& c) -> DType& { return c.dtype; }, kWhat, ParseFloatTypeName)},
        {"threads", MKD_FIELD(int, threads, "an integer")},
        {"listen", MKD_FIELD(std::string, listen, "host:port")},
        {"metrics_listen", MKD_FIELD(std::string, metrics_listen, "host:port")},
        {"max_micro_batch_images", MKD_FIELD(int64_t, max_micro_batch_images, "an integer")},
        {"max_message_bytes", MKD_FIELD(int64_t, max_message_bytes, "an integer")},
        {"dedup_window", MKD_FIELD(int64_t, dedup_window, "an integer")},
        {"job_idle_s", MKD_FIELD(int64_t, job_idle_s, "an integer")},
        {"coordinator", MKD_FIELD(std::string, coordinator, "host:port")},
        {"advertise_host", MKD_FIELD(std::string, advertise_host, "a host name or address")},
        {"capacity_tokens_per_s", MKD_FIELD(double, capacity_tokens_per_s, "a number")},
        {"batcher.max_tokens_per_batch",
         MKD_FIELD(int64_t, batcher.max_tokens_per_batch, "an integer")},
        {"batcher.max_queue_delay_us",
         MKD_FIELD(int64_t, batcher.max_queue_delay_us, "an integer")},
        {"batcher.max_queued", MKD_FIELD(int64_t, batcher.max_queued, "an integer")},
        {"batcher.max_queued_per_job",
         MKD_FIELD(int64_t, batcher.max_queued_per_job, "an integer")},
        {"batcher.fair_share_grace_ms",
         MKD_FIELD(int64_t, batcher.fair_share_grace_ms, "an integer")},
        {"limits.max_streams_per_client",
         MKD_FIELD(int64_t, limits.max_streams_per_client, "an integer")},
        {"limits.max_streams_per_job",
         MKD_FIELD(int64_t, limits.max_streams_per_job, "an integer")},
        {"limits.max_in_flight_per_job",
         MKD_FIELD(int64_t, limits.max_in_flight_per_job, "an integer")},
        {"limits.idle_stream_timeout_s",
         MKD_FIELD(int64_t, limits.idle_stream_timeout_s, "an integer")},
        {"limits.max_shm_region_mb", MKD_FIELD(int64_t, limits.max_shm_region_mb, "an integer")},
    };
    AddTlsConfigKeys<TeacherServerConfig>(
        [](TeacherServerConfig& c) -> TlsOptions& { return c.tls; }, kWhat, /*server=*/true, s);
    AddAuthConfigKeys<TeacherServerConfig>(
        [](TeacherServerConfig& c) -> AuthOptions& { return c.auth; }, kWhat, s);
    return s;
  }();
  return *setters;
}

#undef MKD_FIELD

}  // namespace

BatcherConfig ResolveBatcherDefaults(BatcherConfig c, bool cuda) {
  if (c.max_tokens_per_batch == 0) c.max_tokens_per_batch = cuda ? 65536 : 16384;
  if (c.max_queue_delay_us < 0) c.max_queue_delay_us = cuda ? 1000 : 2000;
  return c;
}

namespace {

absl::Status Validate(const TeacherServerConfig& c) {
  auto bad = [](const char* key, absl::string_view why) { return ConfigKeyError(kWhat, key, why); };
  if (c.weights.empty()) return bad("weights", "is required (a .safetensors file)");
  if (c.device != "cpu" && c.device != "cuda" && !absl::StartsWith(c.device, "cuda:")) {
    return bad("device", absl::StrCat("must be cpu, cuda or cuda:N, got '", c.device, "'"));
    if (c.engine != "torch" && c.engine != "echo") {
      return bad("engine", "must be torch or echo (echo: benchmarks only, zero logits)");
    }
  }
  if (c.threads < 0) return bad("threads", "must be >= 0");
  if (!IsHostPort(c.listen))
    return bad("listen", absl::StrCat("expected host:port, got '", c.listen, "'"));
  if (!c.metrics_listen.empty() && !IsHostPort(c.metrics_listen)) {
    return bad("metrics_listen",
               absl::StrCat("expected host:port or \"\", got '", c.metrics_listen, "'"));
  }
  if (c.max_micro_batch_images < 1) return bad("max_micro_batch_images", "must be positive");
  if (c.max_message_bytes < 1024) return bad("max_message_bytes", "must be at least 1024");
  // gRPC takes the limit as an int; a larger value would wrap negative.
  if (c.max_message_bytes > std::numeric_limits<int32_t>::max()) {
    return bad("max_message_bytes", "must be at most 2147483647 (gRPC's limit is an int)");
  }
  if (c.dedup_window < 0) return bad("dedup_window", "must be >= 0");
  if (c.job_idle_s < 1) return bad("job_idle_s", "must be at least 1 (seconds)");
  if (!c.coordinator.empty() && !IsHostPort(c.coordinator)) {
    return bad("coordinator",
               absl::StrCat("expected host:port or \"\", got '", c.coordinator, "'"));
  }
  if (c.advertise_host.find(':') != std::string::npos && c.advertise_host.front() != '[') {
    return bad("advertise_host", "is a host without a port (write IPv6 addresses in [brackets])");
  }
  if (!(c.capacity_tokens_per_s >= 0))
    return bad("capacity_tokens_per_s", "must be >= 0 (0: measure)");
  if (c.batcher.max_tokens_per_batch < 0) {
    return bad("batcher.max_tokens_per_batch", "must be positive (or 0 for the device's default)");
  }
  if (c.batcher.max_queue_delay_us < -1) {
    return bad("batcher.max_queue_delay_us", "must be >= 0 (or -1 for the device's default)");
  }
  if (c.batcher.max_queued < 1) return bad("batcher.max_queued", "must be positive");
  if (c.batcher.max_queued_per_job < 1)
    return bad("batcher.max_queued_per_job", "must be positive");
  if (c.batcher.fair_share_grace_ms < 0) return bad("batcher.fair_share_grace_ms", "must be >= 0");
  for (const auto& [key, v] : {std::pair<const char*, int64_t>{"limits.max_streams_per_client",
                                                               c.limits.max_streams_per_client},
                               {"limits.max_streams_per_job", c.limits.max_streams_per_job},
                               {"limits.max_in_flight_per_job", c.limits.max_in_flight_per_job},
                               {"limits.idle_stream_timeout_s", c.limits.idle_stream_timeout_s}}) {
    if (v < 0) return bad(key, "must be >= 0 (0: no limit)");
  }
  if (c.limits.max_shm_region_mb < 0 || c.limits.max_shm_region_mb > (1 << 20)) {
    return bad("limits.max_shm_region_mb", "must be in [0, 1048576] (0: no shared memory)");
  }
  return rpc::ValidateServerSecurity(c.tls, c.auth, kWhat);
}

}  // namespace

absl::StatusOr<TeacherServerConfig> ParseTeacherServerConfig(
    const std::string& yaml_text, const std::vector<std::string>& overrides) {
  MKD_ASSIGN_OR_RETURN(auto flat, FlattenConfig(yaml_text, overrides, {"model"}));
  TeacherServerConfig config;
  MKD_ASSIGN_OR_RETURN(config.model,
                       ModelFromConfigNode(flat["model"], kWhat, "model", &config.model_spec));
  MKD_RETURN_IF_ERROR(ApplyConfigKeys(flat, Setters(), kWhat, "model", config));
  MKD_RETURN_IF_ERROR(Validate(config));
  return config;
}

absl::StatusOr<TeacherServerConfig> LoadTeacherServerConfig(
    const std::string& path, const std::vector<std::string>& overrides) {
  MKD_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto config = ParseTeacherServerConfig(text, overrides);
  if (!config.ok()) return Annotate(config.status(), path);
  return config;
}

}  // namespace mkd::teacher
