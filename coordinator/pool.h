// The coordinator's state: the teachers and jobs of a pool, their leases,
// each job's teachers (assignment.h) and plan (planner.h), and a version
// per assignment so that watchers see every change once. No threads or
// sockets; the clock is injected, so tests move time by hand.
//
// State comes only from registrations and heartbeats, which carry the full
// description of their sender: a restarted coordinator rebuilds the pool
// from the next round of heartbeats. For `settle` after start it hands out
// no assignment, so that nobody is told "no teachers" while they have not
// heartbeated yet.
//
// Thread-safe. The change callback runs without the lock held.
#ifndef MKD_COORDINATOR_POOL_H_
#define MKD_COORDINATOR_POOL_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "coordinator/planner.h"
#include "maskedkd/v1/coordinator.pb.h"

namespace mkd::coordinator {

namespace v1 = ::maskedkd::v1;

struct PoolOptions {
  absl::Duration lease = absl::Seconds(5);
  absl::Duration heartbeat = absl::Seconds(1);
  absl::Duration settle = absl::Seconds(5);
  absl::Duration forget_gone = absl::Minutes(5);
  int explore_steps = 3;
  // Registrations and heartbeats that change the membership only mark the
  // pool for recomputing, done once per Tick: n members joining cost
  // O(n log n), not O(n^2). false: recomputed at once (unit tests).
  bool batch_changes = false;
};

// Counts for the coordinator's metrics.
struct PoolStats {
  std::map<v1::TeacherState, int64_t> teachers;  // By state.
  int64_t jobs = 0;
  int64_t assignments = 0;                           // (job, teacher) pairs.
  int64_t reassignments = 0;                         // Total: a job's teachers changed.
  int64_t missed_heartbeats = 0;                     // Total: leases that ran out.
  std::map<std::string, int> planned_micro_batches;  // By job.
  int64_t waiting_jobs = 0;                          // Jobs with no teacher assigned.
  double capacity_tokens_per_s = 0;                  // Sum over serving teachers.
  double served_tokens_per_s = 0;                    // Sum over serving teachers' heartbeats.
};

class Pool {
 public:
  using Clock = std::function<absl::Time()>;
  // Called with the jobs whose assignment changed.
  using OnChange = std::function<void(const std::vector<std::string>& jobs)>;

  explicit Pool(PoolOptions options, Clock clock = absl::Now);

  void SetOnChange(OnChange on_change);

  // Registration (load null) or heartbeat of a teacher; adds it if unknown
  // (a restarted coordinator learns it here). Returns its state: DRAINING
  // tells it to stop taking work. kFailedPrecondition (kTakenMessage) while
  // another process instance holds a live lease on the address: it cannot
  // be taken over, only succeeded once that lease ends. REQUIRES: info
  // validated.
  absl::StatusOr<v1::TeacherState> UpsertTeacher(const v1::TeacherInfo& info,
                                                 const v1::TeacherLoad* load);

  // Marks a teacher draining: it gets no more jobs, and its jobs move to
  // other teachers now. kNotFound for an unknown address.
  absl::StatusOr<v1::TeacherState> Drain(const std::string& address);

  // Registration (timings null) or heartbeat of a job, or of one rank of a
  // data-parallel job: its ranks share one entry (weight, assignment,
  // plan), which lives while any rank heartbeats. kFailedPrecondition
  // (kTakenMessage) while another process instance holds a live lease on
  // the rank. REQUIRES: validated.
  absl::Status UpsertJob(const v1::JobInfo& info, const v1::JobTimings* timings);

  // The refusal of a second process for a live member (fixed: it names
  // neither the member nor the instances).
  static constexpr char kTakenMessage[] =
      "another process holds this member's lease; retry once it ends";

  // Expires leases (teachers become GONE, jobs are dropped), forgets
  // teachers gone for `forget_gone`, and ends the settling period.
  void Tick();

  // The job's assignment; nullopt for an unknown job or while settling.
  std::optional<v1::Assignment> AssignmentFor(const std::string& job_id);

  // One page of the pool (coordinator.proto's paging; page_size 0: all):
  // copies only the members it returns.
  v1::ListTeachersResponse ListTeachers(int page_size = 0, const std::string& after = "");
  v1::ListJobsResponse ListJobs(int page_size = 0, const std::string& after = "");
  // One member's entry, if it is in the pool (what a job may see).
  std::optional<v1::JobStatus> JobStatusOf(const std::string& job_id);
  std::optional<v1::TeacherStatus> TeacherStatusOf(const std::string& address);
  PoolStats Stats();

 private:
  struct Teacher {
    v1::TeacherInfo info;
    v1::TeacherLoad load;
    v1::TeacherState state = v1::TEACHER_STATE_SERVING;
    absl::Time last_seen;
  };
  struct Job {
    v1::JobInfo info;
    v1::JobTimings timings;
    absl::Time last_seen;               // Of any rank.
    std::map<int, absl::Time> ranks;    // Rank -> its last heartbeat.
    std::map<int, uint64_t> instances;  // Rank -> the process holding it.
    std::vector<std::string> teachers;
    uint64_t version = 0;
    Plan plan;
    bool planned = false;                   // Explored and fitted (or pinned).
    std::map<int, TimingSample> samples;    // Latest per m.
    std::map<int, int64_t> measured_steps;  // Per m.
  };

  // Recomputes every assignment and plan; returns the jobs whose
  // assignment changed.
  std::vector<std::string> Recompute() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recompute now, or at the next Tick when changes are batched.
  std::vector<std::string> Changed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::TeacherStatus StatusOf(const std::string& address, const Teacher& t, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::JobStatus StatusOf(const std::string& id, const Job& job, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Replan(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job's fitted step model, knowing whether its teachers share its
  // device.
  StepModel ModelOf(const Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Assignment ToAssignment(const std::string& id, const Job& job) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Settling(absl::Time now) const { return now < started_ + options_.settle; }
  void Notify(const std::vector<std::string>& changed);

  // Constant after construction.
  const PoolOptions options_;
  const Clock clock_;
  const absl::Time started_;

  Mutex mu_;
  OnChange on_change_ ABSL_GUARDED_BY(mu_);                       // Copied out to call.
  std::map<std::string, Teacher> teachers_ ABSL_GUARDED_BY(mu_);  // By address.
  std::map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);          // By id.
  uint64_t next_version_ ABSL_GUARDED_BY(mu_) = 1;
  bool settled_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;  // A batched change awaits Recompute.
  // Teacher address -> the jobs assigned to it, rebuilt by Recompute.
  std::map<std::string, std::vector<std::string>> jobs_of_teacher_ ABSL_GUARDED_BY(mu_);
  int64_t reassignments_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t missed_heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mkd::coordinator

#endif  // MKD_COORDINATOR_POOL_H_
