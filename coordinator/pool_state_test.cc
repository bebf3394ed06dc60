#include <gtest/gtest.h>

#include "coordinator/pool.h"

namespace mkd::coordinator {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

class PoolTest : public ::testing::Test {
 protected:
  PoolTest() : pool_(Options(), [this] { return now_; }) {
    pool_.SetOnChange([this](const std::vector<std::string>& jobs) {
      for (const auto& j : jobs) ++changes_[j];
    });
  }

  static PoolOptions Options() {
    PoolOptions o;
    o.lease = absl::Seconds(3);
    o.settle = absl::Seconds(2);
    o.forget_gone = absl::Seconds(10);
    o.explore_steps = 2;
    return o;
  }

  static v1::TeacherInfo Teacher(const std::string& address, const std::string& model = "m",
                                 uint64_t instance = 1) {
    v1::TeacherInfo t;
    t.set_address(address);
    t.set_model_id(model);
    t.set_capacity_tokens_per_s(1000);
    t.set_instance(instance);
    return t;
  }

  static v1::JobInfo Job(const std::string& id, const std::string& model = "m", int pinned = 0) {
    v1::JobInfo j;
    j.set_job_id(id);
    j.set_model_id(model);
    j.set_weight(1);
    j.set_batch_size(64);
    j.set_kept_patches(98);
    j.set_pinned_micro_batches(pinned);
    return j;
  }

  // Moves time by `d`, heartbeating `teachers` and `jobs` on the way (as
  // their senders would), then ticks.
  void Advance(absl::Duration d, const std::vector<std::string>& teachers = {},
               const std::vector<std::string>& jobs = {}) {
    now_ += d;
    v1::TeacherLoad load;
    for (const auto& t : teachers) EXPECT_TRUE(pool_.UpsertTeacher(Teacher(t), &load).ok());
    for (const auto& j : jobs) EXPECT_TRUE(pool_.UpsertJob(Job(j), nullptr).ok());
    pool_.Tick();
  }

  std::vector<std::string> TeachersOf(const std::string& job) {
    std::vector<std::string> out;
    auto a = pool_.AssignmentFor(job);
    if (a) {
      for (const auto& t : a->teachers()) out.push_back(t.address());
    }
    return out;
  }

  absl::Time now_ = kT0;
  Pool pool_;
  std::map<std::string, int> changes_;
};

TEST_F(PoolTest, SettlesBeforeHandingOutAssignments) {
  EXPECT_TRUE(pool_.UpsertTeacher(Teacher("t1:1"), nullptr).ok());
  EXPECT_TRUE(pool_.UpsertJob(Job("a"), nullptr).ok());
  EXPECT_FALSE(pool_.AssignmentFor("a").has_value()) << "still settling";
  EXPECT_EQ(changes_["a"], 0);
  Advance(absl::Seconds(2), {"t1:1"}, {"a"});
  EXPECT_EQ(TeachersOf("a"), (std::vector<std::string>{"t1:1"}));
  EXPECT_EQ(changes_["a"], 1) << "told once the pool settled";
  EXPECT_FALSE(pool_.AssignmentFor("nobody").has_value());
}

TEST_F(PoolTest, ASilentTeacherIsGoneAfterItsLeaseAndItsJobsWait) {
  EXPECT_TRUE(pool_.UpsertTeacher(Teacher("t1:1"), nullptr).ok());
  EXPECT_TRUE(pool_.UpsertTeacher(Teacher("t2:1"), nullptr).ok());
  EXPECT_TRUE(pool_.UpsertJob(Job("a"), nullptr).ok());
  Advance(absl::Seconds(2), {"t1:1", "t2:1"}, {"a"});
  const uint64_t v1 = pool_.AssignmentFor("a")->version();
  // t2 stops heartbeating; 3 s later (the lease) it is gone.
  Advance(absl::Seconds(2), {"t1:1"}, {"a"});
  EXPECT_EQ(TeachersOf("a").size(), 2u);
  Advance(absl::Seconds(1.5), {"t1:1"}, {"a"});
  EXPECT_EQ(TeachersOf("a"), (std::vector<std::string>{"t1:1"}));
  EXPECT_GT(pool_.AssignmentFor("a")->version(), v1);
  PoolStats s = pool_.Stats();
  EXPECT_EQ(s.missed_heartbeats, 1);
  EXPECT_EQ(s.teachers[v1::TEACHER_STATE_GONE], 1);
  EXPECT_EQ(s.reassignments, 1);
  EXPECT_EQ(s.waiting_jobs, 0);
  EXPECT_DOUBLE_EQ(s.capacity_tokens_per_s, 1000) << "only t1 serves";
  // t1 dies too: the job waits, saying why.
  Advance(absl::Seconds(3.5), {}, {"a"});
  s = pool_.Stats();
  EXPECT_EQ(s.waiting_jobs, 1);
  EXPECT_DOUBLE_EQ(s.capacity_tokens_per_s, 0);
  auto a = pool_.AssignmentFor("a");
  EXPECT_EQ(a->teachers_size(), 0);
  EXPECT_NE(a->waiting_reason().find("model 'm'"), std::string::npos);
  // t2 comes back: it serves again.
  Advance(absl::Seconds(1), {"t2:1"}, {"a"});
  EXPECT_EQ(TeachersOf("a"), (std::vector<std::string>{"t2:1"}));
  // Gone teachers are listed for forget_gone, then forgotten.
  EXPECT_EQ(pool_.ListTeachers().teachers_size(), 2);
  for (int i = 0; i < 12; ++i) Advance(absl::Seconds(1), {"t2:1"}, {"a"});
  EXPECT_EQ(pool_.ListTeachers().teachers_size(), 1);
}

TEST_F(PoolTest, DrainMovesJobsAwayAndTellsTheTeacher) {
  EXPECT_TRUE(pool_.UpsertTeacher(Teacher("t1:1"), nullptr).ok());
  EXPECT_TRUE(pool_.UpsertTeacher(Teacher("t2:1"), nullptr).ok());
  EXPECT_TRUE(pool_.UpsertJob(Job("a"), nullptr).ok());
  Advance(absl::Seconds(2), {"t1:1", "t2:1"}, {"a"});
  auto st = pool_.Drain("t1:1");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, v1::TEACHER_STATE_DRAINING);
  EXPECT_EQ(TeachersOf("a"), (std::vector<std::string>{"t2:1"}));
  v1::TeacherLoad load;
  EXPECT_EQ(*pool_.UpsertTeacher(Teacher("t1:1"), &load), v1::TEACHER_STATE_DRAINING);
  // Another process at that address cannot take it over while the drained
  // one's lease lives...
  EXPECT_EQ(pool_.UpsertTeacher(Teacher("t1:1", "m", 2), &load).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // ...and, restarted once that lease has ended, serves again.
  Advance(absl::Seconds(6), {"t2:1"}, {"a"});
  EXPECT_EQ(*pool_.UpsertTeacher(Teacher("t1:1", "m", 2), &load), v1::TEACHER_STATE_SERVING);
  EXPECT_EQ(pool_.Drain("t9:9").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PoolTest, ALiveJobRankCannotBeTakenOverByAnotherProcess) {
  v1::JobInfo first = Job("a"), second = Job("a");
  first.set_instance(5);
  second.set_instance(6);
  second.set_weight(100);  // What a hijacker would want.
  EXPECT_TRUE(pool_.UpsertJob(first, nullptr).ok());
  const absl::Status taken = pool_.UpsertJob(second, nullptr);
  EXPECT_EQ(taken.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(taken.message(), Pool::kTakenMessage);
  EXPECT_EQ(pool_.ListJobs().jobs(0).info().weight(), 1);
  // Another rank of the same job is another member.
  second.set_rank(1);
  second.set_world_size(2);
  first.set_world_size(2);
  EXPECT_TRUE(pool_.UpsertJob(first, nullptr).ok());
  EXPECT_TRUE(pool_.UpsertJob(second, nullptr).ok());
  // Once rank 0's lease has ended (its process died), a new one takes it.
  v1::JobInfo restarted = first;
  restarted.set_instance(7);
  now_ += absl::Seconds(6);
  EXPECT_TRUE(pool_.UpsertJob(restarted, nullptr).ok());
}

TEST_F(PoolTest, ARestartedCoordinatorRebuildsFromHeartbeats) {
  EXPECT_TRUE(pool_.UpsertTeacher(Teacher("t1:1"), nullptr).ok());
  EXPECT_TRUE(pool_.UpsertJob(Job("a"), nullptr).ok());
  Advance(absl::Seconds(2), {"t1:1"}, {"a"});
  const auto before = TeachersOf("a");
  Pool fresh(Options(), [this] { return now_; });
  v1::TeacherLoad load;
  // The job heartbeats first: while settling, nobody is told "no teachers".
  EXPECT_TRUE(fresh.UpsertJob(Job("a"), nullptr).ok());
  EXPECT_FALSE(fresh.AssignmentFor("a").has_value());
  now_ += absl::Seconds(1);
  EXPECT_TRUE(fresh.UpsertTeacher(Teacher("t1:1"), &load).ok());
  now_ += absl::Seconds(1);
  EXPECT_TRUE(fresh.UpsertJob(Job("a"), nullptr).ok());
  fresh.Tick();
  auto a = fresh.AssignmentFor("a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->teachers(0).address(), before[0]);
}

TEST_F(PoolTest, PlansExploreThenPickTheFastestM) {
  EXPECT_TRUE(pool_.UpsertTeacher(Teacher("t1:1"), nullptr).ok());
  EXPECT_TRUE(pool_.UpsertJob(Job("a"), nullptr).ok());
  Advance(absl::Seconds(2), {"t1:1"}, {"a"});
  // Timings of a job whose teacher costs as much as its student and whose
  // micro-batches have fixed costs: the best m is in between.
  auto report = [&](int m) {
    const double b = 64.0 / m;
    v1::JobTimings t;
    t.set_micro_batches(m);
    t.set_steps(2);
    t.set_student_forward_s(0.002 + 0.001 * b);
    t.set_student_backward_s(0.004 + 0.002 * b);
    t.set_teacher_compute_s(0.001 * b);
    t.set_teacher_round_trip_s(0.001 * b + 0.02);
    EXPECT_TRUE(pool_.UpsertJob(Job("a"), &t).ok());
  };
  std::vector<int> asked;
  for (int i = 0; i < 4; ++i) {
    const int m = pool_.AssignmentFor("a")->micro_batches();
    asked.push_back(m);
    report(m);
  }
  EXPECT_EQ(asked, (std::vector<int>{1, 2, 4, 8}));
  auto plan = pool_.AssignmentFor("a");
  StepModel truth;
  truth.forward = {0.002, 0.001};
  truth.backward = {0.004, 0.002};
  truth.service = {0, 0.001};
  truth.latency = 0.02;
  const Plan best = BestPlan(truth, 64, 16);
  EXPECT_EQ(plan->micro_batches(), best.m);
  EXPECT_NEAR(plan->predicted_step_s(), best.prediction.step_s, 1e-9);
  // Planning shrank the bubble that one micro-batch would leave.
  EXPECT_LT(plan->predicted_bubble(), PredictStep(truth, 64, 1).bubble);
  // A job whose config pins m keeps it.
  EXPECT_TRUE(pool_.UpsertJob(Job("pinned", "m", 3), nullptr).ok());
  EXPECT_EQ(pool_.AssignmentFor("pinned")->micro_batches(), 3);
}

TEST_F(PoolTest, ATeacherOnTheJobsOwnGpuIsPlannedAsSharedHardware) {
  // Two jobs with the same timings; one's teacher is on its own GPU (same
  // host id, same device), the other's on another GPU of that host.
  v1::TeacherInfo same = Teacher("t1:1", "same-gpu");
  same.set_host_id("host-a");
  same.set_device("cuda:0");
  v1::TeacherInfo other = Teacher("t2:1", "other-gpu");
  other.set_host_id("host-a");
  other.set_device("cuda:1");
  v1::JobInfo a = Job("a", "same-gpu", /*pinned=*/4), b = Job("b", "other-gpu", /*pinned=*/4);
  for (v1::JobInfo* j : {&a, &b}) {
    j->set_host_id("host-a");
    j->set_device("cuda:0");
  }
  v1::TeacherLoad load;
  EXPECT_TRUE(pool_.UpsertTeacher(same, &load).ok());
  EXPECT_TRUE(pool_.UpsertTeacher(other, &load).ok());
  EXPECT_TRUE(pool_.UpsertJob(a, nullptr).ok());
  EXPECT_TRUE(pool_.UpsertJob(b, nullptr).ok());
  now_ += absl::Seconds(2);
  pool_.Tick();
  ASSERT_EQ(pool_.AssignmentFor("a")->teachers(0).address(), "t1:1");
  EXPECT_EQ(pool_.AssignmentFor("a")->teachers(0).host_id(), "host-a");
  EXPECT_EQ(pool_.AssignmentFor("a")->teachers(0).device(), "cuda:0");
  v1::JobTimings t;
  t.set_micro_batches(4);
  t.set_steps(2);
  t.set_student_forward_s(0.016);
  t.set_student_backward_s(0.032);
  t.set_teacher_compute_s(0.016);
  t.set_teacher_round_trip_s(0.016);
  EXPECT_TRUE(pool_.UpsertJob(a, &t).ok());
  EXPECT_TRUE(pool_.UpsertJob(b, &t).ok());
  StepModel model;
  model.forward.per_image = 0.001;
  model.backward.per_image = 0.002;
  model.service.per_image = 0.001;
  StepModel shared = model;
  shared.shared_device = true;
  // Pinned m = 4 (b = 16): the prediction is the shared device's for "a"
  // (64 * (1 + 1 + 2) ms) and the pipelined one for "b".
  EXPECT_NEAR(pool_.AssignmentFor("a")->predicted_step_s(), PredictStep(shared, 64, 4).step_s,
              1e-9);
  EXPECT_NEAR(pool_.AssignmentFor("a")->predicted_step_s(), 0.256, 1e-9);
  EXPECT_NEAR(pool_.AssignmentFor("b")->predicted_step_s(), PredictStep(model, 64, 4).step_s, 1e-9);
  EXPECT_LT(pool_.AssignmentFor("b")->predicted_step_s(), 0.256);
}

TEST_F(PoolTest, SilentJobsAreDropped) {
  EXPECT_TRUE(pool_.UpsertTeacher(Teacher("t1:1"), nullptr).ok());
  EXPECT_TRUE(pool_.UpsertJob(Job("a"), nullptr).ok());
  Advance(absl::Seconds(2), {"t1:1"}, {"a"});
  EXPECT_EQ(pool_.ListJobs().jobs_size(), 1);
  Advance(absl::Seconds(2), {"t1:1"});
  Advance(absl::Seconds(2), {"t1:1"});
  EXPECT_EQ(pool_.ListJobs().jobs_size(), 0);
  EXPECT_TRUE(pool_.ListTeachers().teachers(0).jobs().empty());
}

// A data-parallel job: its ranks share one entry (one weight, one
// assignment, one plan), which stays while any rank heartbeats; the plan
// counts rank 0's steps only, so two ranks do not explore twice as fast.
TEST_F(PoolTest, TheRanksOfADataParallelJobAreOneJob) {
  auto rank = [](int r) {
    v1::JobInfo j = Job("dp");
    j.set_world_size(2);
    j.set_rank(r);
    return j;
  };
  EXPECT_TRUE(pool_.UpsertTeacher(Teacher("t1:1"), nullptr).ok());
  EXPECT_TRUE(pool_.UpsertJob(rank(0), nullptr).ok());
  EXPECT_TRUE(pool_.UpsertJob(rank(1), nullptr).ok());
  EXPECT_TRUE(pool_.UpsertJob(Job("solo"), nullptr).ok());
  Advance(absl::Seconds(2), {"t1:1"}, {"solo"});
  v1::ListJobsResponse jobs = pool_.ListJobs();
  ASSERT_EQ(jobs.jobs_size(), 2);
  EXPECT_EQ(jobs.jobs(0).info().job_id(), "dp");
  EXPECT_EQ(jobs.jobs(0).ranks(), 2);
  EXPECT_EQ(jobs.jobs(0).info().world_size(), 2);
  EXPECT_EQ(jobs.jobs(1).ranks(), 1);
  EXPECT_EQ(pool_.Stats().jobs, 2);
  // Exploration: m = 1 needs explore_steps (2) of rank 0's steps; rank 1's
  // reports refresh the timings but do not count.
  v1::JobTimings t;
  t.set_micro_batches(1);
  t.set_steps(1);
  t.set_student_forward_s(0.01);
  t.set_student_backward_s(0.02);
  t.set_teacher_compute_s(0.01);
  t.set_teacher_round_trip_s(0.02);
  EXPECT_TRUE(pool_.UpsertJob(rank(1), &t).ok());
  EXPECT_TRUE(pool_.UpsertJob(rank(1), &t).ok());
  EXPECT_TRUE(pool_.UpsertJob(rank(0), &t).ok());
  EXPECT_EQ(pool_.AssignmentFor("dp")->micro_batches(), 1) << "rank 0 has measured 1 step";
  EXPECT_TRUE(pool_.UpsertJob(rank(0), &t).ok());
  EXPECT_EQ(pool_.AssignmentFor("dp")->micro_batches(), 2) << "explores m = 2 next";
  // Rank 1 falls silent: the job stays, with one rank, for rank 0.
  v1::TeacherLoad load;
  for (int i = 0; i < 2; ++i) {
    now_ += absl::Seconds(2);
    EXPECT_TRUE(pool_.UpsertTeacher(Teacher("t1:1"), &load).ok());
    EXPECT_TRUE(pool_.UpsertJob(rank(0), nullptr).ok());
  }
  pool_.Tick();
  jobs = pool_.ListJobs();
  ASSERT_EQ(jobs.jobs_size(), 1) << "solo's lease ran out";
  EXPECT_EQ(jobs.jobs(0).ranks(), 1);
  EXPECT_EQ(TeachersOf("dp"), (std::vector<std::string>{"t1:1"}));
  // Then rank 0 too: the job is gone.
  now_ += absl::Seconds(4);
  pool_.Tick();
  EXPECT_EQ(pool_.ListJobs().jobs_size(), 0);
}

}  // namespace
}  // namespace mkd::coordinator

namespace mkd::coordinator {
namespace {

// Listings come in pages, in id order, each copying only its members; the
// teachers' job lists match the assignment.
TEST_F(PoolTest, ListsComeInPagesInIdOrder) {
  EXPECT_TRUE(pool_.UpsertTeacher(Teacher("t:1"), nullptr).ok());
  for (const char* id : {"e", "a", "c", "b", "d"}) {
    EXPECT_TRUE(pool_.UpsertJob(Job(id), nullptr).ok());
  }
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    const v1::ListJobsResponse page = pool_.ListJobs(2, token);
    EXPECT_EQ(page.total(), 5);
    EXPECT_LE(page.jobs_size(), 2);
    for (const v1::JobStatus& j : page.jobs()) seen.push_back(j.info().job_id());
    token = page.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(pool_.ListJobs().jobs_size(), 5);  // page_size 0: everything.
  EXPECT_EQ(pool_.ListJobs(5).next_page_token(), "");
  const v1::ListTeachersResponse teachers = pool_.ListTeachers(1);
  ASSERT_EQ(teachers.teachers_size(), 1);
  EXPECT_EQ(teachers.teachers(0).jobs_size(), 5);
  ASSERT_TRUE(pool_.JobStatusOf("c").has_value());
  EXPECT_EQ(pool_.JobStatusOf("c")->teachers(0), "t:1");
  EXPECT_FALSE(pool_.JobStatusOf("z").has_value());
}

// Batched: joins mark the pool, and the next Tick assigns them all at once.
TEST_F(PoolTest, BatchedChangesAreAssignedOnTheNextTick) {
  PoolOptions o = Options();
  o.settle = absl::ZeroDuration();
  o.batch_changes = true;
  Pool batched(o, [this] { return now_; });
  EXPECT_TRUE(batched.UpsertTeacher(Teacher("t:1"), nullptr).ok());
  EXPECT_TRUE(batched.UpsertJob(Job("a"), nullptr).ok());
  EXPECT_EQ(batched.ListTeachers().teachers(0).jobs_size(), 0);  // Not yet assigned.
  batched.Tick();
  std::optional<v1::Assignment> a = batched.AssignmentFor("a");
  ASSERT_TRUE(a.has_value());
  ASSERT_EQ(a->teachers_size(), 1);
  EXPECT_EQ(a->teachers(0).address(), "t:1");
}

}  // namespace
}  // namespace mkd::coordinator
