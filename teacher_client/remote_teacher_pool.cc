// RemoteTeacher: finding teachers (one fixed address, or a coordinator's
// assignment), checking what they serve, and reporting the job's timings.
#include <map>
#include <optional>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/host_identity.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "proto/wire.h"
#include "rpc/channel_args.h"
#include "teacher_client/remote_teacher_impl.h"

namespace mkd::client {
namespace {

absl::StatusOr<v1::ModelInfo> ReadModelInfo(const std::shared_ptr<grpc::Channel>& channel,
                                            const std::string& address, absl::Duration wait) {
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + wait));
  v1::ModelInfo info;
  auto stub = v1::TeacherService::NewStub(channel);
  grpc::Status st = stub->GetModelInfo(&ctx, v1::ModelInfoRequest(), &info);
  if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    // Waiting for a connection hides why there is none (a refused TLS
    // handshake, a wrong port): one call that does not wait reports it.
    grpc::ClientContext now;
    now.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    grpc::Status why = stub->GetModelInfo(&now, v1::ModelInfoRequest(), &info);
    if (why.ok()) return info;
    st = why;
  }
  if (!st.ok()) {
    return absl::UnavailableError(
        absl::StrCat("teacher at '", address, "': GetModelInfo failed: ", st.error_message()));
  }
  return info;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeTeacherChannel(const std::string& address,
                                                                  const TlsOptions& tls) {
  const grpc::ChannelArguments args = rpc::BulkStreamArguments();
  return rpc::MakeChannel(address, tls, &args, rpc::Role::kTeacher);  // Only a teacher may answer.
}

void RemoteTeacher::AttachMembership(std::unique_ptr<JobMembership> membership) {
  membership_ = std::move(membership);
}

void RemoteTeacher::OnAssignment(const v1::Assignment& a) {
  // Logged once assign_mu_ is released: nothing is logged under a lock.
  std::vector<std::pair<LogSeverity, std::string>> said;
  ApplyAssignment(a, &said);
  for (const auto& [severity, line] : said) {
    if (severity == LogSeverity::kInfo) {
      MKD_LOG(INFO) << line;
    } else {
      MKD_LOG(WARNING) << line;
    }
  }
}

void RemoteTeacher::ApplyAssignment(const v1::Assignment& a,
                                    std::vector<std::pair<LogSeverity, std::string>>* said) {
  const auto warn = [&](std::string line) {
    said->emplace_back(LogSeverity::kWarning, std::move(line));
  };
  // One assignment at a time, never an older one after a newer.
  MutexLock serial(&assign_mu_);
  if (a.version() < applied_version_) return;
  applied_version_ = a.version();
  planned_m_ = a.micro_batches();
  {
    MutexLock lock(&mu_);
    predicted_step_s_ = a.predicted_step_s();
  }
  if (a.teachers_size() == 0) {
    warn(absl::StrCat("job ", options_.job_id, ": waiting for a teacher: ", a.waiting_reason()));
  }
  std::set<std::string> keep;
  for (const v1::TeacherEndpoint& t : a.teachers()) {
    keep.insert(t.address());
    if (HasEndpoint(t.address())) continue;
    // Checked before use: a teacher of another model would answer with
    // logits of the wrong network.
    auto channel = MakeTeacherChannel(t.address(), options_.tls);
    absl::StatusOr<v1::ModelInfo> info =
        channel.ok() ? ReadModelInfo(*channel, t.address(), absl::Seconds(5))
                     : absl::StatusOr<v1::ModelInfo>(channel.status());
    if (!info.ok()) {
      warn(absl::StrCat("job ", options_.job_id, ": ", info.status().message(), "; not used"));
      continue;
    }
    if (info->model_id() != options_.model_id || info->num_classes() != config_.num_classes ||
        info->img_size() != config_.img_size || info->patch_size() != config_.patch_size) {
      warn(absl::StrCat("job ", options_.job_id, ": refusing teacher ", t.address(),
                        ": it serves model '", info->model_id(), "', the job needs '",
                        options_.model_id, "'"));
      MutexLock lock(&mu_);
      refused_.insert(t.address());
      continue;
    }
    said->emplace_back(LogSeverity::kInfo, absl::StrCat("job ", options_.job_id,
                                                        ": streaming to teacher ", t.address()));
    AddEndpoint(t.address(), *channel, *info);
  }
  KeepOnly(keep);
}

double RemoteTeacher::PredictedStepSeconds() {
  MutexLock lock(&mu_);
  return predicted_step_s_;
}

void RemoteTeacher::ReportStep(const StepTimings& t) {
  MutexLock lock(&mu_);
  v1::JobTimings& j = job_timings_;
  j.set_step(t.step);
  j.set_micro_batches(t.micro_batches);
  j.set_steps(j.steps() + 1);
  j.set_student_forward_s(j.student_forward_s() + t.forward_s);
  j.set_student_backward_s(j.student_backward_s() + t.backward_s);
  j.set_measured_step_s(j.measured_step_s() + t.step_s);
  j.set_images_per_s(j.images_per_s() + t.images_per_s);
  j.set_predicted_step_s(t.predicted_step_s);
}

v1::JobTimings RemoteTeacher::TakeJobTimings() {
  MutexLock lock(&mu_);
  v1::JobTimings mean = job_timings_;
  const double steps = static_cast<double>(std::max<int64_t>(1, job_timings_.steps()));
  const double trips = static_cast<double>(std::max<int64_t>(1, job_round_trips_));
  mean.set_student_forward_s(job_timings_.student_forward_s() / steps);
  mean.set_student_backward_s(job_timings_.student_backward_s() / steps);
  mean.set_measured_step_s(job_timings_.measured_step_s() / steps);
  mean.set_images_per_s(job_timings_.images_per_s() / steps);
  mean.set_teacher_round_trip_s(job_timings_.teacher_round_trip_s() / trips);
  mean.set_teacher_compute_s(job_timings_.teacher_compute_s() / trips);
  const int64_t step = job_timings_.step();
  const int m = job_timings_.micro_batches();
  job_timings_ = v1::JobTimings();
  job_timings_.set_step(step);
  job_timings_.set_micro_batches(m);
  job_round_trips_ = 0;
  return mean;
}

TeacherStats RemoteTeacher::TakeStats() {
  MutexLock lock(&mu_);
  TeacherStats out = std::move(stats_);
  stats_ = TeacherStats();
  return out;
}

absl::StatusOr<std::unique_ptr<Teacher>> MakeRemoteTeacher(const RemoteTeacherOptions& o) {
  const v1::DType wire = proto::WireDType(o.wire_dtype);
  if (o.max_attempts < 1) return absl::InvalidArgumentError("max_attempts must be >= 1");
  if (o.coordinator.empty()) {
    MKD_ASSIGN_OR_RETURN(auto channel, MakeTeacherChannel(o.address, o.tls));
    MKD_ASSIGN_OR_RETURN(v1::ModelInfo info,
                         ReadModelInfo(channel, o.address, o.reconnect_timeout));
    if (!o.model_id.empty() && info.model_id() != o.model_id) {
      return absl::FailedPreconditionError(absl::StrCat("teacher at '", o.address,
                                                        "' serves model '", info.model_id(),
                                                        "', the job needs '", o.model_id, "'"));
    }
    auto teacher = std::make_unique<RemoteTeacher>(o, wire, info);
    teacher->AddEndpoint(o.address, channel, info);
    return std::unique_ptr<Teacher>(std::move(teacher));
  }
  if (o.model_id.empty()) {
    return absl::InvalidArgumentError("a job in a pool must name its teacher model (model_id)");
  }
  // The first teacher the coordinator assigns tells us the architecture;
  // until one serves the model, the job waits (and says so).
  struct First {
    Mutex mu;
    CondVar cv;
    std::optional<v1::Assignment> assignment ABSL_GUARDED_BY(mu);
    RemoteTeacher* teacher ABSL_GUARDED_BY(mu) = nullptr;
    std::optional<absl::Status> refused ABSL_GUARDED_BY(mu);
  };
  auto first = std::make_shared<First>();
  v1::JobInfo job;
  job.set_job_id(o.job_id);
  job.set_model_id(o.model_id);
  job.set_weight(o.job_weight);
  job.set_batch_size(o.batch_size);
  job.set_rank(o.rank);
  job.set_world_size(o.world_size);
  job.set_kept_patches(o.kept_patches);
  job.set_max_teachers(o.max_teachers);
  job.set_pinned_micro_batches(o.pinned_micro_batches);
  job.set_max_micro_batches(o.max_micro_batches);
  job.set_host(ThisHost().host);
  job.set_host_id(ThisHost().host_id);
  job.set_device(o.device);
  // Random per process: while this rank's lease lives, no other process can
  // take its place in the pool.
  std::random_device rd;
  job.set_instance(uint64_t{rd()} << 32 | rd());
  MKD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> coordinator,
                       rpc::MakeChannel(o.coordinator, o.tls, nullptr));
  auto membership = std::make_unique<JobMembership>(
      o.coordinator, std::move(coordinator), job,
      [first] {
        MutexLock lock(&first->mu);
        return first->teacher ? first->teacher->TakeJobTimings() : v1::JobTimings();
      },
      [first](const v1::Assignment& a) {
        RemoteTeacher* teacher = nullptr;
        {
          MutexLock lock(&first->mu);
          teacher = first->teacher;
          if (teacher == nullptr) {
            first->assignment = a;
            first->cv.SignalAll();
          }
        }
        // The teacher outlives this thread: its destructor stops the
        // membership before anything else.
        if (teacher != nullptr) teacher->OnAssignment(a);
      },
      [first](const absl::Status& refused) {
        {
          MutexLock lock(&first->mu);
          if (first->teacher == nullptr) {
            first->refused = refused;  // Ends the wait below at once.
            first->cv.SignalAll();
            return;
          }
        }
        // Serving never depends on the coordinator: the teachers check the
        // job's token themselves and end the job if they refuse it too.
        MKD_LOG(WARNING) << refused.message() << "; the job keeps its teachers";
      },
      o.job_token);
  const absl::Time give_up = absl::Now() + o.teacher_wait;
  first->mu.Lock();
  bool said = false;
  std::map<std::string, std::string> failures;  // Teacher address -> last error said.
  while (absl::Now() < give_up) {
    first->cv.WaitWithTimeout(&first->mu, absl::Milliseconds(200));
    if (first->refused) break;
    if (!first->assignment) continue;
    const v1::Assignment a = *first->assignment;
    if (a.teachers_size() == 0 && !said) {
      said = true;
      first->mu.Unlock();  // Nothing is logged under a lock.
      MKD_LOG(WARNING) << "job " << o.job_id << ": waiting up to "
                       << absl::FormatDuration(give_up - absl::Now())
                       << " for a teacher: " << a.waiting_reason();
      first->mu.Lock();
    }
    for (const v1::TeacherEndpoint& t : a.teachers()) {
      // Dialling blocks for up to 5 s: not under the lock the membership's
      // threads take for every heartbeat and assignment.
      first->mu.Unlock();
      auto channel = MakeTeacherChannel(t.address(), o.tls);
      absl::StatusOr<v1::ModelInfo> info =
          channel.ok() ? ReadModelInfo(*channel, t.address(), absl::Seconds(5))
                       : absl::StatusOr<v1::ModelInfo>(channel.status());
      first->mu.Lock();
      if (!info.ok()) {
        // Said once per teacher and reason: a refused TLS handshake must not
        // look like a silent wait for teacher_wait_s.
        std::string& last = failures[t.address()];
        if (last != info.status().message()) {
          last = std::string(info.status().message());
          first->mu.Unlock();  // Nothing is logged under a lock.
          MKD_LOG(WARNING) << "job " << o.job_id << ": " << last << "; not used";
          first->mu.Lock();
        }
        continue;
      }
      if (info->model_id() != o.model_id) continue;
      auto teacher = std::make_unique<RemoteTeacher>(o, wire, *info);
      first->teacher = teacher.get();
      // The newest assignment: another may have come while we dialled.
      const v1::Assignment latest = *first->assignment;
      first->mu.Unlock();
      teacher->OnAssignment(latest);
      teacher->AttachMembership(std::move(membership));
      return std::unique_ptr<Teacher>(std::move(teacher));
    }
  }
  const std::optional<absl::Status> refused = first->refused;
  first->mu.Unlock();  // The membership's threads may be waiting for it.
  membership.reset();
  if (refused) return *refused;  // A token or description retrying cannot mend.
  return absl::UnavailableError(absl::StrCat(
      "no teacher in the pool at ", o.coordinator, " serves model '", o.model_id, "' after ",
      absl::FormatDuration(o.teacher_wait), " (config key distill.teacher_wait_s)"));
}

}  // namespace mkd::client
