#include "coordinator/metrics.h"

#include "common/build_info_metric.h"
#include "prometheus/text_serializer.h"
#include "proto/wire.h"
#include "rpc/pool_auth.h"

namespace mkd::coordinator {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;

}  // namespace

CoordinatorMetrics::CoordinatorMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      teachers_(BuildGauge()
                    .Name("mkd_coordinator_teachers")
                    .Help("Teachers in the pool, by state (gone: lease expired, still listed).")
                    .Register(*registry_)),
      jobs_(BuildGauge()
                .Name("mkd_coordinator_jobs")
                .Help("Training jobs holding a lease.")
                .Register(*registry_)
                .Add({})),
      assignments_(BuildGauge()
                       .Name("mkd_coordinator_assignments")
                       .Help("(job, teacher) pairs assigned now.")
                       .Register(*registry_)
                       .Add({})),
      waiting_jobs_(
          BuildGauge()
              .Name("mkd_coordinator_waiting_jobs")
              .Help(
                  "Jobs holding a lease with no teacher assigned (no teacher serves their model).")
              .Register(*registry_)
              .Add({})),
      capacity_(
          BuildGauge()
              .Name("mkd_coordinator_capacity_tokens_per_second")
              .Help("Kept tokens/s the serving teachers can do, as they measured it at start.")
              .Register(*registry_)
              .Add({})),
      served_(BuildGauge()
                  .Name("mkd_coordinator_served_tokens_per_second")
                  .Help("Kept tokens/s the serving teachers served, from their last heartbeats.")
                  .Register(*registry_)
                  .Add({})),
      reassignments_(BuildCounter()
                         .Name("mkd_coordinator_reassignments_total")
                         .Help("Times a job's set of teachers changed after it had one.")
                         .Register(*registry_)
                         .Add({})),
      missed_heartbeats_(BuildCounter()
                             .Name("mkd_coordinator_missed_heartbeats_total")
                             .Help("Teacher leases that ran out (the teacher was declared gone).")
                             .Register(*registry_)
                             .Add({})),
      invalid_requests_(BuildCounter()
                            .Name("mkd_coordinator_invalid_requests_total")
                            .Help("RPCs rejected with INVALID_ARGUMENT.")
                            .Register(*registry_)
                            .Add({})),
      auth_refusals_(BuildCounter()
                         .Name("mkd_coordinator_auth_refusals_total")
                         .Help("RPCs refused by the pool's checks, by reason: missing, invalid or "
                               "expired credentials, the wrong role, another name, or another "
                               "instance of a live member.")
                         .Register(*registry_)),
      planned_(BuildGauge()
                   .Name("mkd_coordinator_planned_micro_batches")
                   .Help("The micro-batch count m planned for each job.")
                   .Register(*registry_)) {
  AddBuildInfoMetric(*registry_, "mkd-coordinator");
  for (const char* reason : rpc::kAuthRefusalReasons) auth_refusals_.Add({{"reason", reason}});
}

// prometheus::Family::Add is thread-safe and returns the existing series.
void CoordinatorMetrics::CountAuthRefusal(const std::string& reason) {
  auth_refusals_.Add({{"reason", reason}}).Increment();
}

double CoordinatorMetrics::auth_refusals(const std::string& reason) {
  return auth_refusals_.Add({{"reason", reason}}).Value();
}

void CoordinatorMetrics::Update(const PoolStats& stats) {
  MutexLock lock(&mu_);
  for (const auto& [state, n] : stats.teachers) {
    teachers_.Add({{"state", proto::TeacherStateName(state)}}).Set(static_cast<double>(n));
  }
  jobs_.Set(static_cast<double>(stats.jobs));
  assignments_.Set(static_cast<double>(stats.assignments));
  waiting_jobs_.Set(static_cast<double>(stats.waiting_jobs));
  capacity_.Set(stats.capacity_tokens_per_s);
  served_.Set(stats.served_tokens_per_s);
  // The pool keeps totals; counters only go up, by the difference.
  reassignments_.Increment(std::max(0.0, stats.reassignments - reassignments_.Value()));
  missed_heartbeats_.Increment(std::max(0.0, stats.missed_heartbeats - missed_heartbeats_.Value()));
  for (auto it = planned_by_job_.begin(); it != planned_by_job_.end();) {
    if (stats.planned_micro_batches.count(it->first) == 0) {
      planned_.Remove(it->second);  // The job left: no stale series.
      it = planned_by_job_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [job, m] : stats.planned_micro_batches) {
    prometheus::Gauge*& g = planned_by_job_[job];
    // job_id, not job: Prometheus gives every scraped series its own `job`
    // label (the scrape job), which this would collide with.
    if (g == nullptr) g = &planned_.Add({{"job_id", job}});
    g->Set(m);
  }
}

std::string CoordinatorMetrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace mkd::coordinator
