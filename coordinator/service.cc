#include "coordinator/service.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/config_yaml.h"
#include "rpc/status.h"

namespace mkd::coordinator {
namespace {

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

absl::Status CheckName(absl::string_view field, const std::string& v, size_t max) {
  if (v.empty()) return Bad(field, "is empty");
  if (v.size() > max) return Bad(field, absl::StrCat("is ", v.size(), " bytes; at most ", max));
  return absl::OkStatus();
}

bool FiniteNonNegative(double v) { return std::isfinite(v) && v >= 0; }

// Where a member runs (informational; compared, never dialled): bounded.
absl::Status CheckWhere(const std::string& host, const std::string& host_id) {
  if (host.size() > 253) return Bad("info.host", "is at most 253 bytes");
  if (host_id.size() > 128) return Bad("info.host_id", "is at most 128 bytes");
  return absl::OkStatus();
}

}  // namespace

// Upper bounds the planner's arithmetic stays finite under (found by
// coordinator_fuzz: a finite 7e306 s compute time made the predicted step
// infinite). Far above anything real: a day per micro-batch, 1e12 tokens/s.
constexpr double kMaxSeconds = 86400;
constexpr double kMaxRate = 1e12;

absl::Status ValidateJobTimings(const v1::JobTimings& t) {
  for (double v : {t.student_forward_s(), t.student_backward_s(), t.teacher_round_trip_s(),
                   t.teacher_compute_s(), t.measured_step_s(), t.predicted_step_s()}) {
    if (!FiniteNonNegative(v) || v > kMaxSeconds) {
      return Bad("timings", "times must be finite, >= 0 and at most 86400 s");
    }
  }
  if (!FiniteNonNegative(t.images_per_s()) || t.images_per_s() > kMaxRate) {
    return Bad("timings", "images_per_s must be finite, >= 0 and at most 1e12");
  }
  if (t.micro_batches() < 0 || t.steps() < 0 || t.step() < 0) {
    return Bad("timings", "step, steps and micro_batches must be >= 0");
  }
  return absl::OkStatus();
}

absl::Status ValidateTeacherLoad(const v1::TeacherLoad& load) {
  if (load.queued() < 0 || load.in_flight() < 0) {
    return Bad("load", "queued and in_flight must be >= 0");
  }
  if (!FiniteNonNegative(load.tokens_per_s()) || load.tokens_per_s() > kMaxRate) {
    return Bad("load.tokens_per_s", "must be finite, >= 0 and at most 1e12");
  }
  return absl::OkStatus();
}

absl::Status ValidateTeacherInfo(const v1::TeacherInfo& info) {
  if (absl::Status s = CheckDialAddress(info.address(), "info.address"); !s.ok()) return s;
  if (absl::Status s = CheckName("info.model_id", info.model_id(), 256); !s.ok()) return s;
  if (!FiniteNonNegative(info.capacity_tokens_per_s()) || info.capacity_tokens_per_s() > kMaxRate) {
    return Bad("info.capacity_tokens_per_s", "must be finite, >= 0 and at most 1e12");
  }
  if (info.device().size() > 64 || info.dtype().size() > 64) {
    return Bad("info.device", "device and dtype are at most 64 bytes");
  }
  if (info.max_request_bytes() < 0) return Bad("info.max_request_bytes", "must be >= 0");
  return CheckWhere(info.host(), info.host_id());
}

absl::Status ValidateJobInfo(const v1::JobInfo& info) {
  if (absl::Status s = CheckName("info.job_id", info.job_id(), 128); !s.ok()) return s;
  if (absl::Status s = CheckName("info.model_id", info.model_id(), 256); !s.ok()) return s;
  if (!(info.weight() > 0 && info.weight() <= 1000)) {
    return Bad("info.weight", absl::StrCat(info.weight(), " is outside (0, 1000]"));
  }
  if (info.batch_size() < 1) return Bad("info.batch_size", "must be >= 1");
  if (info.kept_patches() < 1) return Bad("info.kept_patches", "must be >= 1");
  if (info.max_teachers() < 0) return Bad("info.max_teachers", "must be >= 0 (0: no limit)");
  if (info.pinned_micro_batches() < 0 || info.pinned_micro_batches() > info.batch_size()) {
    return Bad("info.pinned_micro_batches", "must be in [0, batch]");
  }
  if (info.max_micro_batches() < 0) return Bad("info.max_micro_batches", "must be >= 0");
  if (info.world_size() < 0 || info.world_size() > 65536) {
    return Bad("info.world_size", "must be in [0, 65536] (0: one rank)");
  }
  if (info.rank() < 0 || info.rank() >= std::max(1, info.world_size())) {
    return Bad("info.rank", absl::StrCat(info.rank(), " is not in [0, world_size ",
                                         std::max(1, info.world_size()), ")"));
  }
  if (info.device().size() > 64) return Bad("info.device", "is at most 64 bytes");
  return CheckWhere(info.host(), info.host_id());
}

// One WatchAssignment stream. Holds at most one write in flight and the
// newest assignment waiting behind it. gRPC operations are started outside
// mu_, as reactions may run on other threads at once.
class CoordinatorServiceImpl::Watcher final : public grpc::ServerWriteReactor<v1::Assignment> {
 public:
  // Construction and OnDone run on different gRPC threads, ordered by
  // gRPC's own synchronisation, which TSan cannot see in Debian's
  // uninstrumented library; taking mu_ in both makes the order visible.
  Watcher(CoordinatorServiceImpl* service, std::string job)
      : service_(service), job_(std::move(job)) {
    MutexLock lock(&mu_);
  }

  const std::string& job() const { return job_; }

  // Sends `a` unless something as new was sent or is waiting.
  void Offer(const std::optional<v1::Assignment>& a) ABSL_LOCKS_EXCLUDED(mu_) {
    if (!a) return;
    mu_.Lock();
    if (finishing_ || a->version() <= offered_version_) {
      mu_.Unlock();
      return;
    }
    offered_version_ = a->version();
    next_ = *a;
    has_next_ = true;
    if (writing_) {
      mu_.Unlock();
      return;
    }
    WriteNext();
  }

  void Close(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    bool finish_now = false;
    {
      MutexLock lock(&mu_);
      if (finishing_) return;
      finishing_ = true;
      finish_status_ = status;
      finish_now = !writing_;  // Otherwise OnWriteDone finishes.
    }
    if (finish_now) Finish(status);
  }

  void OnWriteDone(bool ok) override {
    mu_.Lock();
    writing_ = false;
    if (!ok && !finishing_) {  // The client went away.
      finishing_ = true;
      finish_status_ = grpc::Status::CANCELLED;
    }
    if (finishing_) {
      const grpc::Status status = finish_status_;
      mu_.Unlock();
      Finish(status);
      return;
    }
    if (has_next_) {
      WriteNext();
      return;
    }
    mu_.Unlock();
  }

  void OnCancel() override { Close(grpc::Status::CANCELLED); }

  void OnDone() override {
    { MutexLock lock(&mu_); }  // See the constructor.
    service_->Forget(this);
    delete this;
  }

 private:
  // REQUIRES: has_next_, !writing_. Releases mu_ before handing the write to
  // gRPC, whose reactions may run on other threads at once.
  void WriteNext() ABSL_UNLOCK_FUNCTION(mu_) {
    current_ = std::move(next_);
    has_next_ = false;
    writing_ = true;
    mu_.Unlock();
    StartWrite(&current_);
  }

  CoordinatorServiceImpl* const service_;
  const std::string job_;
  Mutex mu_;
  // Being written: set under mu_ while writing_ is false, then owned by gRPC
  // until OnWriteDone (so not annotated: StartWrite reads it unlocked).
  v1::Assignment current_;
  v1::Assignment next_ ABSL_GUARDED_BY(mu_);
  bool has_next_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  uint64_t offered_version_ ABSL_GUARDED_BY(mu_) = 0;
};

CoordinatorServiceImpl::CoordinatorServiceImpl(const CoordinatorConfig& config, Pool* pool,
                                               CoordinatorMetrics* metrics)
    : config_(config),
      auth_(rpc::MakeServerAuthorizer(config.auth, config.tls)),
      pool_(pool),
      metrics_(metrics) {}

absl::Status CoordinatorServiceImpl::Authorize(grpc::CallbackServerContext* ctx, rpc::Role role,
                                               absl::string_view name) {
  if (auth_.open()) return absl::OkStatus();
  std::string reason;
  absl::Status st = auth_.Check(rpc::CredentialsOf(*ctx), role, name, &reason);
  if (!st.ok() && metrics_) metrics_->CountAuthRefusal(reason);
  return st;
}

absl::Status CoordinatorServiceImpl::Admitted(const absl::Status& upsert) {
  if (upsert.code() == absl::StatusCode::kFailedPrecondition && metrics_) {
    metrics_->CountAuthRefusal("instance");
  }
  return upsert;
}

absl::StatusOr<rpc::Principal> CoordinatorServiceImpl::AuthorizeListing(
    grpc::CallbackServerContext* ctx) {
  if (auth_.open()) return rpc::Principal{rpc::Role::kOperator, ""};
  std::string reason;
  absl::StatusOr<rpc::Principal> p = auth_.Identify(rpc::CredentialsOf(*ctx), &reason);
  if (p.ok() && p->role == rpc::Role::kTeacher) {
    reason = "role";
    p = absl::PermissionDeniedError("a teacher may not list the pool");
  }
  if (!p.ok() && metrics_) metrics_->CountAuthRefusal(reason);
  return p;
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::Reply(grpc::CallbackServerContext* ctx,
                                                        const absl::Status& status) {
  if (status.code() == absl::StatusCode::kInvalidArgument && metrics_) {
    metrics_->CountInvalidRequest();
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(rpc::ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::RegisterTeacher(
    grpc::CallbackServerContext* ctx, const v1::RegisterTeacherRequest* request,
    v1::RegisterTeacherResponse* response) {
  absl::Status st = ValidateTeacherInfo(request->info());
  if (st.ok()) st = Authorize(ctx, rpc::Role::kTeacher, request->info().address());
  if (st.ok()) st = Admitted(pool_->UpsertTeacher(request->info(), nullptr).status());
  if (st.ok()) {
    response->set_lease_s(config_.lease_s);
    response->set_heartbeat_s(config_.heartbeat_s);
  }
  return Reply(ctx, st);
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::TeacherHeartbeat(
    grpc::CallbackServerContext* ctx, const v1::TeacherHeartbeatRequest* request,
    v1::TeacherHeartbeatResponse* response) {
  absl::Status st = ValidateTeacherInfo(request->info());
  if (st.ok()) st = ValidateTeacherLoad(request->load());
  if (st.ok()) st = Authorize(ctx, rpc::Role::kTeacher, request->info().address());
  if (st.ok()) {
    absl::StatusOr<v1::TeacherState> state =
        pool_->UpsertTeacher(request->info(), &request->load());
    st = Admitted(state.status());
    if (st.ok()) response->set_state(*state);
    response->set_lease_s(config_.lease_s);
  }
  return Reply(ctx, st);
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::RegisterJob(grpc::CallbackServerContext* ctx,
                                                              const v1::RegisterJobRequest* request,
                                                              v1::RegisterJobResponse* response) {
  absl::Status st = ValidateJobInfo(request->info());
  if (st.ok()) st = Authorize(ctx, rpc::Role::kJob, request->info().job_id());
  if (st.ok()) st = Admitted(pool_->UpsertJob(request->info(), nullptr));
  if (st.ok()) {
    response->set_lease_s(config_.lease_s);
    response->set_heartbeat_s(config_.heartbeat_s);
  }
  return Reply(ctx, st);
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::JobHeartbeat(
    grpc::CallbackServerContext* ctx, const v1::JobHeartbeatRequest* request,
    v1::JobHeartbeatResponse* response) {
  absl::Status st = ValidateJobInfo(request->info());
  if (st.ok()) st = Authorize(ctx, rpc::Role::kJob, request->info().job_id());
  if (st.ok()) st = ValidateJobTimings(request->timings());
  if (st.ok()) {
    st = Admitted(
        pool_->UpsertJob(request->info(), request->has_timings() ? &request->timings() : nullptr));
    response->set_lease_s(config_.lease_s);
  }
  return Reply(ctx, st);
}

grpc::ServerWriteReactor<v1::Assignment>* CoordinatorServiceImpl::WatchAssignment(
    grpc::CallbackServerContext* ctx, const v1::WatchAssignmentRequest* request) {
  auto* watcher = new Watcher(this, request->job_id());
  if (request->job_id().empty() || request->job_id().size() > 128) {
    if (metrics_) metrics_->CountInvalidRequest();
    watcher->Close(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "job_id: must be 1 to 128 bytes"));
    return watcher;
  }
  if (absl::Status auth = Authorize(ctx, rpc::Role::kJob, request->job_id()); !auth.ok()) {
    watcher->Close(rpc::ToGrpcStatus(auth));
    return watcher;
  }
  {
    MutexLock lock(&mu_);
    if (!closed_) {
      watchers_.emplace(request->job_id(), watcher);
      // Offered under mu_, so OnChange cannot slip an older version after it.
      watcher->Offer(pool_->AssignmentFor(request->job_id()));
      return watcher;
    }
  }
  watcher->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down"));
  return watcher;
}

void CoordinatorServiceImpl::OnChange(const std::vector<std::string>& jobs) {
  for (const std::string& job : jobs) {
    std::optional<v1::Assignment> a = pool_->AssignmentFor(job);
    MutexLock lock(&mu_);
    auto [begin, end] = watchers_.equal_range(job);
    for (auto it = begin; it != end; ++it) it->second->Offer(a);
  }
}

void CoordinatorServiceImpl::Forget(Watcher* watcher) {
  MutexLock lock(&mu_);
  auto [begin, end] = watchers_.equal_range(watcher->job());
  for (auto it = begin; it != end; ++it) {
    if (it->second == watcher) {
      watchers_.erase(it);
      return;
    }
  }
}

void CoordinatorServiceImpl::CloseWatches() {
  MutexLock lock(&mu_);
  closed_ = true;
  for (auto& [job, w] : watchers_) {
    w->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down"));
  }
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::ListTeachers(
    grpc::CallbackServerContext* ctx, const v1::ListTeachersRequest* request,
    v1::ListTeachersResponse* response) {
  if (request->page_size() < 0) return Reply(ctx, Bad("page_size", "must be >= 0"));
  absl::StatusOr<rpc::Principal> caller = AuthorizeListing(ctx);
  if (!caller.ok()) return Reply(ctx, caller.status());
  if (caller->role == rpc::Role::kJob) {
    // A job sees the teachers serving it, and no other job's name.
    if (std::optional<v1::JobStatus> job = pool_->JobStatusOf(caller->name)) {
      for (const std::string& address : job->teachers()) {
        std::optional<v1::TeacherStatus> t = pool_->TeacherStatusOf(address);
        if (!t) continue;
        t->clear_jobs();
        t->add_jobs(caller->name);
        *response->add_teachers() = *std::move(t);
      }
    }
    response->set_total(response->teachers_size());
    return Reply(ctx, absl::OkStatus());
  }
  *response = pool_->ListTeachers(request->page_size(), request->page_token());
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::ListJobs(grpc::CallbackServerContext* ctx,
                                                           const v1::ListJobsRequest* request,
                                                           v1::ListJobsResponse* response) {
  if (request->page_size() < 0) return Reply(ctx, Bad("page_size", "must be >= 0"));
  absl::StatusOr<rpc::Principal> caller = AuthorizeListing(ctx);
  if (!caller.ok()) return Reply(ctx, caller.status());
  if (caller->role == rpc::Role::kJob) {  // A job sees only itself.
    if (std::optional<v1::JobStatus> job = pool_->JobStatusOf(caller->name)) {
      *response->add_jobs() = *std::move(job);
    }
    response->set_total(response->jobs_size());
    return Reply(ctx, absl::OkStatus());
  }
  *response = pool_->ListJobs(request->page_size(), request->page_token());
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::Drain(grpc::CallbackServerContext* ctx,
                                                        const v1::DrainRequest* request,
                                                        v1::DrainResponse* response) {
  if (absl::Status s = CheckDialAddress(request->address(), "address"); !s.ok()) {
    return Reply(ctx, s);
  }
  if (absl::Status s = Authorize(ctx, rpc::Role::kOperator, ""); !s.ok()) return Reply(ctx, s);
  absl::StatusOr<v1::TeacherState> state = pool_->Drain(request->address());
  if (state.ok()) response->set_state(*state);
  return Reply(ctx, state.status());
}

}  // namespace mkd::coordinator
