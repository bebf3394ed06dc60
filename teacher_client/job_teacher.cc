#include "teacher_client/job_teacher.h"

#include <algorithm>

#include "common/device.h"
#include "common/file_util.h"
#include "common/masking.h"
#include "common/status_macros.h"
#include "rpc/job_token.h"
#include "teacher_client/remote_teacher.h"

namespace mkd::client {

absl::StatusOr<std::unique_ptr<Teacher>> MakeJobTeacher(const student::TrainConfig& config) {
  const student::DistillConfig& d = config.distill;
  RemoteTeacherOptions o;
  o.address = d.teacher_address;
  o.coordinator = d.coordinator;
  o.wire_dtype = d.wire_dtype;
  o.data_plane = d.data_plane;
  o.shm_region_bytes = d.shm_region_mb << 20;
  // As the pool compares it with its teachers' devices ("cuda:0").
  MKD_ASSIGN_OR_RETURN(torch::Device device,
                       ResolveDevice(config.run.device, "config key 'run.device'"));
  o.device = device.str();
  o.timeout = absl::Milliseconds(d.teacher_timeout_ms);
  o.reconnect_timeout = o.timeout;
  o.teacher_wait = absl::Seconds(d.teacher_wait_s);
  o.job_id = student::JobIdOf(config);
  o.job_weight = d.job_weight;
  o.model_id = d.teacher_model_id;
  if (o.model_id.empty() && !d.teacher_weights.empty() && !d.coordinator.empty()) {
    // The id mkd-teacher reports for the same file.
    absl::StatusOr<std::string> bytes = ReadFile(d.teacher_weights);
    if (!bytes.ok()) return Annotate(bytes.status(), "config key 'distill.teacher_weights'");
    o.model_id = ModelIdOfWeights(d.teacher_weights, *bytes);
  }
  o.batch_size = static_cast<int>(config.data.batch_size);
  MKD_ASSIGN_OR_RETURN(int64_t kept, KeepCount(d.keep_ratio, config.model.num_patches()));
  o.kept_patches = static_cast<int>(kept);
  o.max_teachers = d.max_teachers;
  o.pinned_micro_batches = d.micro_batches;
  o.rank = std::max(0, config.dist.rank);
  o.world_size = std::max(1, config.dist.world_size);
  o.tls = config.tls;
  if (!d.job_token_file.empty()) {
    MKD_ASSIGN_OR_RETURN(o.job_token,
                         rpc::LoadJobToken(d.job_token_file, "distill.job_token_file"));
  }
  WarnIfInsecure(o.tls);
  return MakeRemoteTeacher(o);
}

}  // namespace mkd::client
