#include "coordinator/pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/config_yaml.h"
#include "coordinator/assignment.h"

namespace mkd::coordinator {
namespace {

constexpr int kDefaultMaxMicroBatches = 16;

int MaxMicroBatches(const v1::JobInfo& info) {
  return info.max_micro_batches() > 0 ? info.max_micro_batches() : kDefaultMaxMicroBatches;
}

}  // namespace

Pool::Pool(PoolOptions options, Clock clock)
    : options_(options), clock_(std::move(clock)), started_(clock_()) {}

void Pool::SetOnChange(OnChange on_change) {
  MutexLock lock(&mu_);
  on_change_ = std::move(on_change);
}

void Pool::Notify(const std::vector<std::string>& changed) {
  if (changed.empty()) return;
  OnChange fn;
  {
    MutexLock lock(&mu_);
    if (!settled_) return;  // Nothing is handed out yet.
    fn = on_change_;
  }
  if (fn) fn(changed);
}

absl::StatusOr<v1::TeacherState> Pool::UpsertTeacher(const v1::TeacherInfo& info,
                                                     const v1::TeacherLoad* load) {
  std::vector<std::string> changed;
  v1::TeacherState state;
  {
    MutexLock lock(&mu_);
    auto [it, inserted] = teachers_.try_emplace(info.address());
    Teacher& t = it->second;
    if (!inserted && t.state != v1::TEACHER_STATE_GONE && t.info.instance() != info.instance() &&
        clock_() < t.last_seen + options_.lease) {
      return absl::FailedPreconditionError(kTakenMessage);
    }
    // A new process at a known address (another instance) starts afresh:
    // a teacher drained before its restart serves again.
    const bool reborn =
        !inserted && (t.state == v1::TEACHER_STATE_GONE || t.info.instance() != info.instance());
    const bool relevant_change =
        !inserted && (t.info.model_id() != info.model_id() ||
                      t.info.capacity_tokens_per_s() != info.capacity_tokens_per_s());
    t.info = info;
    if (load != nullptr) t.load = *load;
    t.last_seen = clock_();
    if (inserted || reborn) t.state = v1::TEACHER_STATE_SERVING;
    if (inserted || reborn || relevant_change) changed = Changed();
    state = t.state;
  }
  Notify(changed);
  return state;
}

absl::StatusOr<v1::TeacherState> Pool::Drain(const std::string& address) {
  std::vector<std::string> changed;
  v1::TeacherState state;
  {
    MutexLock lock(&mu_);
    auto it = teachers_.find(address);
    if (it == teachers_.end()) {
      return absl::NotFoundError(
          absl::StrCat("no teacher at ", QuoteForError(address), " in the pool"));
    }
    if (it->second.state == v1::TEACHER_STATE_SERVING) {
      it->second.state = v1::TEACHER_STATE_DRAINING;
      changed = Recompute();
    }
    state = it->second.state;
  }
  Notify(changed);
  return state;
}

absl::Status Pool::UpsertJob(const v1::JobInfo& info, const v1::JobTimings* timings) {
  std::vector<std::string> changed;
  {
    MutexLock lock(&mu_);
    auto [it, inserted] = jobs_.try_emplace(info.job_id());
    Job& job = it->second;
    auto rank = job.ranks.find(info.rank());
    auto held = job.instances.find(info.rank());
    if (rank != job.ranks.end() && held != job.instances.end() && held->second != 0 &&
        info.instance() != 0 && held->second != info.instance() &&
        clock_() < rank->second + options_.lease) {
      return absl::FailedPreconditionError(kTakenMessage);
    }
    job.instances[info.rank()] = info.instance();
    const bool relevant_change =
        !inserted &&
        (job.info.model_id() != info.model_id() || job.info.weight() != info.weight() ||
         job.info.max_teachers() != info.max_teachers() ||
         job.info.batch_size() != info.batch_size() ||
         job.info.pinned_micro_batches() != info.pinned_micro_batches() ||
         job.info.world_size() != info.world_size());
    const int world = std::max(1, info.world_size());
    job.info = info;
    job.info.set_rank(0);  // The job's description; ranks are counted apart.
    job.last_seen = clock_();
    job.ranks[info.rank()] = job.last_seen;
    // A job restarted with fewer ranks: those beyond it are gone.
    job.ranks.erase(job.ranks.lower_bound(world), job.ranks.end());
    job.instances.erase(job.instances.lower_bound(world), job.instances.end());
    // Ranks step in lockstep: one rank's timings stand for all (the
    // teachers' share of the others' work is in the service time they
    // measure), and rank 0's step counts are the job's.
    if (timings != nullptr && timings->steps() > 0 && timings->micro_batches() > 0) {
      job.timings = *timings;
      const int m = timings->micro_batches();
      TimingSample s;
      s.m = m;
      s.images = static_cast<double>(info.batch_size()) / m;
      s.forward_s = timings->student_forward_s();
      s.backward_s = timings->student_backward_s();
      s.round_trip_s = timings->teacher_round_trip_s();
      s.service_s = timings->teacher_compute_s();
      job.samples[m] = s;
      if (info.rank() == 0) job.measured_steps[m] += timings->steps();
    }
    if (inserted || relevant_change) {
      changed = Changed();
    } else if (timings != nullptr) {
      const int before = job.plan.m;
      Replan(job);
      if (job.plan.m != before) {
        job.version = next_version_++;
        changed.push_back(info.job_id());
      }
    }
  }
  Notify(changed);
  return absl::OkStatus();
}

StepModel Pool::ModelOf(const Job& job) const {
  std::vector<TimingSample> samples;
  for (const auto& [m, s] : job.samples) samples.push_back(s);
  StepModel model = FitStepModel(samples);
  // A GPU is one device: teachers on the job's own GPU (same host id and
  // device name) take turns with it. CPU cores are many, and whether two
  // processes share them is the OS's (or taskset's) business, so a CPU
  // teacher on the same host is planned as separate hardware.
  const std::string& device = job.info.device();
  bool shared = !job.teachers.empty() && device.rfind("cuda", 0) == 0;
  for (const std::string& address : job.teachers) {
    auto it = teachers_.find(address);
    shared = shared && it != teachers_.end() && it->second.info.host_id() == job.info.host_id() &&
             it->second.info.device() == device;
  }
  model.shared_device = shared;
  return model;
}

void Pool::Replan(Job& job) {
  const v1::JobInfo& info = job.info;
  const int64_t batch = std::max(1, info.batch_size());
  const StepModel model = ModelOf(job);
  if (info.pinned_micro_batches() > 0) {
    job.plan.m = info.pinned_micro_batches();
    job.plan.prediction =
        job.samples.empty() ? StepPrediction{} : PredictStep(model, batch, job.plan.m);
    job.planned = true;
    return;
  }
  const int max_m = MaxMicroBatches(info);
  // Measure each candidate before trusting a fit: one b says nothing about
  // the fixed costs that make small micro-batches expensive.
  for (int m : ExploreCandidates(batch, max_m)) {
    if (job.measured_steps[m] < options_.explore_steps) {
      job.plan.m = m;
      job.plan.prediction = job.samples.empty() ? StepPrediction{} : PredictStep(model, batch, m);
      job.planned = false;
      return;
    }
  }
  const Plan best = BestPlan(model, batch, max_m);
  const StepPrediction now = PredictStep(model, batch, std::min<int64_t>(job.plan.m, batch));
  // Hysteresis: switch only for a predicted gain of 3%, so that noise in
  // the timings does not flip m back and forth.
  if (!job.planned || best.prediction.step_s < now.step_s * 0.97) {
    job.plan = best;
  } else {
    job.plan.prediction = now;
  }
  job.planned = true;
}

std::vector<std::string> Pool::Changed() {
  if (!options_.batch_changes) return Recompute();
  dirty_ = true;
  return {};
}

std::vector<std::string> Pool::Recompute() {
  dirty_ = false;
  std::vector<TeacherView> teachers;
  for (const auto& [address, t] : teachers_) {
    teachers.push_back({address, t.info.model_id(), t.info.capacity_tokens_per_s(),
                        t.state == v1::TEACHER_STATE_SERVING});
  }
  std::vector<JobView> jobs;
  for (const auto& [id, j] : jobs_) {
    jobs.push_back({id, j.info.model_id(), j.info.weight(), j.info.max_teachers(), j.teachers});
  }
  std::map<std::string, std::vector<std::string>> assigned = AssignTeachers(teachers, jobs);
  std::vector<std::string> changed;
  jobs_of_teacher_.clear();
  for (auto& [id, job] : jobs_) {
    std::vector<std::string>& now = assigned[id];
    for (const std::string& t : now) jobs_of_teacher_[t].push_back(id);
    const int before = job.plan.m;
    const bool new_teachers = now != job.teachers;
    if (new_teachers) {
      if (!job.teachers.empty()) ++reassignments_;
      job.teachers = now;
    }
    Replan(job);
    if (new_teachers || job.plan.m != before || job.version == 0) {
      job.version = next_version_++;
      changed.push_back(id);
    }
  }
  return changed;
}

void Pool::Tick() {
  std::vector<std::string> changed;
  {
    MutexLock lock(&mu_);
    const absl::Time now = clock_();
    bool membership = false;
    for (auto it = teachers_.begin(); it != teachers_.end();) {
      Teacher& t = it->second;
      const absl::Duration silent = now - t.last_seen;
      if (t.state != v1::TEACHER_STATE_GONE && silent > options_.lease) {
        t.state = v1::TEACHER_STATE_GONE;
        ++missed_heartbeats_;
        membership = true;
      }
      const bool forget =
          t.state == v1::TEACHER_STATE_GONE && silent > options_.lease + options_.forget_gone;
      it = forget ? teachers_.erase(it) : std::next(it);
    }
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      std::map<int, absl::Time>& ranks = it->second.ranks;
      for (auto r = ranks.begin(); r != ranks.end();) {
        r = now - r->second > options_.lease ? ranks.erase(r) : std::next(r);
      }
      const bool expired = ranks.empty();
      if (expired) membership = true;
      it = expired ? jobs_.erase(it) : std::next(it);
    }
    if (membership || dirty_) changed = Recompute();
    if (!settled_ && !Settling(now)) {
      settled_ = true;  // From now on every job hears its assignment.
      changed.clear();
      for (const auto& [id, job] : jobs_) changed.push_back(id);
    }
  }
  Notify(changed);
}

v1::Assignment Pool::ToAssignment(const std::string& id, const Job& job) const {
  v1::Assignment a;
  a.set_job_id(id);
  a.set_version(job.version);
  for (const std::string& address : job.teachers) {
    auto it = teachers_.find(address);
    v1::TeacherEndpoint* e = a.add_teachers();
    e->set_address(address);
    if (it != teachers_.end()) {
      e->set_model_id(it->second.info.model_id());
      e->set_max_request_bytes(it->second.info.max_request_bytes());
      e->set_host_id(it->second.info.host_id());
      e->set_device(it->second.info.device());
    }
  }
  a.set_micro_batches(job.plan.m);
  a.set_predicted_step_s(job.plan.prediction.step_s);
  a.set_predicted_bubble(job.plan.prediction.bubble);
  if (job.teachers.empty()) {
    a.set_waiting_reason(absl::StrCat("no serving teacher in the pool has model ",
                                      QuoteForError(job.info.model_id())));
  }
  return a;
}

std::optional<v1::Assignment> Pool::AssignmentFor(const std::string& job_id) {
  MutexLock lock(&mu_);
  if (Settling(clock_())) return std::nullopt;
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return std::nullopt;
  return ToAssignment(job_id, it->second);
}

v1::TeacherStatus Pool::StatusOf(const std::string& address, const Teacher& t,
                                 absl::Time now) const {
  v1::TeacherStatus s;
  *s.mutable_info() = t.info;
  *s.mutable_load() = t.load;
  s.set_state(t.state);
  s.set_last_heartbeat_age_s(absl::ToDoubleSeconds(now - t.last_seen));
  if (auto it = jobs_of_teacher_.find(address); it != jobs_of_teacher_.end()) {
    for (const std::string& id : it->second) s.add_jobs(id);
  }
  return s;
}

v1::JobStatus Pool::StatusOf(const std::string& id, const Job& job, absl::Time now) const {
  v1::JobStatus out;
  v1::JobStatus* s = &out;
  *s->mutable_info() = job.info;
  *s->mutable_timings() = job.timings;
  for (const std::string& t : job.teachers) s->add_teachers(t);
  const v1::Assignment a = ToAssignment(id, job);
  s->set_micro_batches(a.micro_batches());
  s->set_predicted_step_s(a.predicted_step_s());
  s->set_predicted_bubble(a.predicted_bubble());
  s->set_waiting_reason(a.waiting_reason());
  s->set_last_heartbeat_age_s(absl::ToDoubleSeconds(now - job.last_seen));
  s->set_ranks(static_cast<int32_t>(job.ranks.size()));
  if (!job.samples.empty()) {
    const StepModel model = ModelOf(job);
    const int64_t batch = std::max(1, job.info.batch_size());
    const int top = static_cast<int>(std::min<int64_t>(MaxMicroBatches(job.info), batch));
    for (int m = 1; m <= top; ++m)
      s->add_predicted_step_s_by_m(PredictStep(model, batch, m).step_s);
  }
  return out;
}

namespace {

// One page of `members` (a map by key): at most `page_size` (0: all) after
// `after`, as [first, last), and the next page's token ("" on the last).
template <typename Map>
auto PageOf(const Map& members, int page_size, const std::string& after, std::string* next) {
  auto first = after.empty() ? members.begin() : members.upper_bound(after);
  auto last = first;
  for (int n = 0; last != members.end() && (page_size <= 0 || n < page_size); ++last, ++n) {
  }
  *next = last == members.end() || page_size <= 0 ? "" : std::prev(last)->first;
  return std::make_pair(first, last);
}

}  // namespace

v1::ListTeachersResponse Pool::ListTeachers(int page_size, const std::string& after) {
  MutexLock lock(&mu_);
  const absl::Time now = clock_();
  v1::ListTeachersResponse out;
  out.set_total(static_cast<int32_t>(teachers_.size()));
  std::string next;
  auto [first, last] = PageOf(teachers_, page_size, after, &next);
  for (auto it = first; it != last; ++it)
    *out.add_teachers() = StatusOf(it->first, it->second, now);
  out.set_next_page_token(next);
  return out;
}

v1::ListJobsResponse Pool::ListJobs(int page_size, const std::string& after) {
  MutexLock lock(&mu_);
  const absl::Time now = clock_();
  v1::ListJobsResponse out;
  out.set_total(static_cast<int32_t>(jobs_.size()));
  std::string next;
  auto [first, last] = PageOf(jobs_, page_size, after, &next);
  for (auto it = first; it != last; ++it) *out.add_jobs() = StatusOf(it->first, it->second, now);
  out.set_next_page_token(next);
  return out;
}

std::optional<v1::JobStatus> Pool::JobStatusOf(const std::string& job_id) {
  MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return std::nullopt;
  return StatusOf(job_id, it->second, clock_());
}

std::optional<v1::TeacherStatus> Pool::TeacherStatusOf(const std::string& address) {
  MutexLock lock(&mu_);
  auto it = teachers_.find(address);
  if (it == teachers_.end()) return std::nullopt;
  return StatusOf(address, it->second, clock_());
}

PoolStats Pool::Stats() {
  MutexLock lock(&mu_);
  PoolStats s;
  for (v1::TeacherState state :
       {v1::TEACHER_STATE_SERVING, v1::TEACHER_STATE_DRAINING, v1::TEACHER_STATE_GONE}) {
    s.teachers[state] = 0;
  }
  for (const auto& [address, t] : teachers_) {
    ++s.teachers[t.state];
    if (t.state == v1::TEACHER_STATE_SERVING) {
      s.capacity_tokens_per_s += t.info.capacity_tokens_per_s();
      s.served_tokens_per_s += t.load.tokens_per_s();
    }
  }
  s.jobs = static_cast<int64_t>(jobs_.size());
  for (const auto& [id, job] : jobs_) {
    s.assignments += static_cast<int64_t>(job.teachers.size());
    if (job.teachers.empty()) ++s.waiting_jobs;
    s.planned_micro_batches[id] = job.plan.m;
  }
  s.reassignments = reassignments_;
  s.missed_heartbeats = missed_heartbeats_;
  return s;
}

}  // namespace mkd::coordinator
