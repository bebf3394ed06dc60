#include "teacher_server/batch_queue.h"

#include <gtest/gtest.h>

namespace mkd::teacher {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

QueuedWork Work(const std::string& job, int64_t b, int64_t k, absl::Time at) {
  QueuedWork w;
  w.job_id = job;
  w.images = b;
  w.kept_patches = k;
  w.enqueued = at;
  return w;
}

BatchQueueOptions Options() {
  BatchQueueOptions o;
  o.max_tokens_per_batch = 100;
  o.max_queue_delay = absl::Milliseconds(5);
  o.max_queued = 8;
  o.max_queued_per_job = 4;
  return o;
}

TEST(BatchQueue, WaitsForCompanyUntilTheDelay) {
  BatchQueue q(Options());
  ASSERT_TRUE(q.Push(Work("a", 2, 9, kT0)).ok());  // 20 tokens: not full.
  absl::Time wake;
  EXPECT_TRUE(q.TakeBatch(kT0 + absl::Milliseconds(1), false, &wake).empty());
  EXPECT_EQ(wake, kT0 + absl::Milliseconds(5));
  auto batch = q.TakeBatch(kT0 + absl::Milliseconds(5), false, &wake);
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(q.size(), 0);
}

TEST(BatchQueue, WithOneActiveStreamNothingWaitsForCompany) {
  BatchQueue q(Options());
  q.set_active_streams(1);  // Nobody else has work in flight.
  ASSERT_TRUE(q.Push(Work("a", 2, 9, kT0)).ok());
  absl::Time wake;
  EXPECT_EQ(q.TakeBatch(kT0, false, &wake).size(), 1u);
  // A second stream with work in flight: waiting for company pays again.
  q.set_active_streams(2);
  ASSERT_TRUE(q.Push(Work("a", 2, 9, kT0)).ok());
  EXPECT_TRUE(q.TakeBatch(kT0 + absl::Milliseconds(1), false, &wake).empty());
  EXPECT_EQ(wake, kT0 + absl::Milliseconds(5));
  q.set_active_streams(0);  // It was answered meanwhile.
  EXPECT_EQ(q.TakeBatch(kT0 + absl::Milliseconds(1), false, &wake).size(), 1u);
}

TEST(BatchQueue, DispatchesAtOnceWhenTheBudgetFillsAndNeverMixesK) {
  BatchQueue q(Options());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(q.Push(Work("a", 4, 9, kT0)).ok());  // 40 tokens each.
  ASSERT_TRUE(q.Push(Work("b", 1, 3, kT0)).ok());
  absl::Time wake;
  auto batch = q.TakeBatch(kT0, false, &wake);
  ASSERT_EQ(batch.size(), 2u);  // 80 tokens; a third would be 120 > 100.
  for (const auto& w : batch) EXPECT_EQ(w.kept_patches, 9);
  EXPECT_EQ(q.size(), 2);
  EXPECT_TRUE(q.TakeBatch(kT0, false, &wake).empty());  // 40 left, not due yet.
  auto drained = q.TakeBatch(kT0, true, &wake);         // Draining takes what waits.
  EXPECT_EQ(drained.size(), 1u);
}

TEST(BatchQueue, OversizedWorkRunsAlone) {
  BatchQueue q(Options());
  ASSERT_TRUE(q.Push(Work("a", 50, 9, kT0)).ok());  // 500 tokens.
  absl::Time wake;
  EXPECT_EQ(q.TakeBatch(kT0, false, &wake).size(), 1u);
}

TEST(BatchQueue, FullQueueIsResourceExhaustedPerJobAndOverall) {
  BatchQueue q(Options());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(q.Push(Work("a", 1, 1, kT0)).ok());
  auto st = q.Push(Work("a", 1, 1, kT0));
  EXPECT_EQ(st.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.status().message().find("job 'a'"), std::string::npos);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(q.Push(Work("b" + std::to_string(i), 1, 1, kT0)).ok());
  st = q.Push(Work("c", 1, 1, kT0));
  EXPECT_EQ(st.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.status().message().find("queue is full"), std::string::npos);
}

TEST(BatchQueue, ExpiredWorkIsTakenOutBeforeBatching) {
  BatchQueue q(Options());
  QueuedWork w = Work("a", 1, 4, kT0);
  w.deadline = kT0 + absl::Milliseconds(2);
  ASSERT_TRUE(q.Push(w).ok());
  ASSERT_TRUE(q.Push(Work("a", 1, 4, kT0)).ok());
  // (The batcher was busy and did not get to dispatch in time.)
  EXPECT_TRUE(q.TakeExpired(kT0 + absl::Milliseconds(1)).empty());
  auto expired = q.TakeExpired(kT0 + absl::Milliseconds(2));
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].deadline, kT0 + absl::Milliseconds(2));
  EXPECT_EQ(q.size(), 1);
}

TEST(BatchQueue, WorkThatWouldExpireWaitingForCompanyRunsAtOnce) {
  BatchQueue q(Options());  // 5 ms delay.
  QueuedWork w = Work("a", 1, 4, kT0);
  w.deadline = kT0 + absl::Milliseconds(2);  // A 2 ms timeout on an idle server.
  ASSERT_TRUE(q.Push(w).ok());
  absl::Time wake;
  EXPECT_EQ(q.TakeBatch(kT0, false, &wake).size(), 1u);
  // Work whose deadline outlasts the delay still waits for company.
  QueuedWork patient = Work("a", 1, 4, kT0);
  patient.deadline = kT0 + absl::Milliseconds(6);
  ASSERT_TRUE(q.Push(patient).ok());
  EXPECT_TRUE(q.TakeBatch(kT0, false, &wake).empty());
  EXPECT_EQ(wake, kT0 + absl::Milliseconds(5));
}

TEST(BatchQueue, WeightsSplitTheTokensServed) {
  BatchQueueOptions o = Options();
  o.max_queued_per_job = 100;
  o.max_queued = 200;
  o.max_tokens_per_batch = 30;  // Three 10-token micro-batches per batch.
  BatchQueue q(o);
  for (int i = 0; i < 40; ++i) {
    QueuedWork heavy = Work("heavy", 1, 9, kT0);
    heavy.weight = 2.0;
    ASSERT_TRUE(q.Push(heavy).ok());
    ASSERT_TRUE(q.Push(Work("light", 1, 9, kT0)).ok());
  }
  absl::Time wake;
  int heavy = 0, light = 0;
  for (int b = 0; b < 10; ++b) {
    for (const auto& w : q.TakeBatch(kT0, false, &wake)) (w.job_id == "heavy" ? heavy : light)++;
  }
  EXPECT_EQ(heavy + light, 30);
  EXPECT_EQ(heavy, 20);  // 2:1 while both wait.
  EXPECT_EQ(light, 10);
}

TEST(BatchQueue, JobsShareBatchesFairly) {
  BatchQueueOptions o = Options();
  o.max_queued_per_job = 100;
  o.max_queued = 200;
  o.max_tokens_per_batch = 40;  // Four 10-token micro-batches per batch.
  BatchQueue q(o);
  // Job "hog" queues 40 micro-batches before "small" queues 4.
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(q.Push(Work("hog", 1, 9, kT0)).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(q.Push(Work("small", 1, 9, kT0)).ok());
  absl::Time wake;
  auto first = q.TakeBatch(kT0, false, &wake);
  ASSERT_EQ(first.size(), 4u);
  int small = 0;
  for (const auto& w : first) small += w.job_id == "small";
  EXPECT_EQ(small, 2);  // Alternating, not 4 x hog first.
  auto second = q.TakeBatch(kT0, false, &wake);
  small = 0;
  for (const auto& w : second) small += w.job_id == "small";
  EXPECT_EQ(small, 2);
  EXPECT_EQ(q.served_tokens("small"), 40);
}

TEST(BatchQueue, AnIdleJobGetsNoBankedCredit) {
  BatchQueueOptions o = Options();
  o.max_queued_per_job = 100;
  o.max_queued = 200;
  o.max_tokens_per_batch = 20;
  BatchQueue q(o);
  absl::Time wake;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(q.Push(Work("a", 1, 9, kT0)).ok());
  for (int i = 0; i < 4; ++i) q.TakeBatch(kT0, false, &wake);  // "a" served 80 tokens alone.
  ASSERT_TRUE(q.Push(Work("late", 1, 9, kT0)).ok());
  ASSERT_TRUE(q.Push(Work("late", 1, 9, kT0)).ok());
  auto batch = q.TakeBatch(kT0, false, &wake);
  ASSERT_EQ(batch.size(), 2u);
  // "late" starts level with "a" (not 80 tokens behind), so they alternate.
  EXPECT_NE(batch[0].job_id, batch[1].job_id);
}

TEST(BatchQueue, AJobBackFromAShortGapKeepsItsPlace) {
  BatchQueueOptions o = Options();
  o.max_queued_per_job = 100;
  o.max_queued = 200;
  o.max_tokens_per_batch = 10;  // One micro-batch per batch.
  o.fair_share_grace = absl::Milliseconds(100);
  BatchQueue q(o);
  absl::Time wake;
  auto push = [&](const std::string& job, int n, absl::Time at) {
    for (int i = 0; i < n; ++i) ASSERT_TRUE(q.Push(Work(job, 1, 9, at)).ok());
  };
  push("a", 2, kT0);
  push("b", 10, kT0);
  for (int i = 0; i < 4; ++i) q.TakeBatch(kT0, false, &wake);  // a, b, a, b: a runs empty.
  for (int i = 0; i < 3; ++i) q.TakeBatch(kT0, false, &wake);  // b alone while a computes.
  // Back within the grace: a is served until it has caught up with b.
  push("a", 3, kT0 + absl::Milliseconds(50));
  int a = 0;
  for (int i = 0; i < 3; ++i) {
    for (const auto& w : q.TakeBatch(kT0 + absl::Milliseconds(50), false, &wake))
      a += w.job_id == "a";
  }
  EXPECT_EQ(a, 3);
  // Back after a long absence: level with b, no banked credit.
  push("b", 20, kT0 + absl::Seconds(1));
  for (int i = 0; i < 10; ++i) q.TakeBatch(kT0 + absl::Seconds(1), false, &wake);
  push("a", 2, kT0 + absl::Seconds(2));
  auto batch = q.TakeBatch(kT0 + absl::Seconds(2), false, &wake);
  auto next = q.TakeBatch(kT0 + absl::Seconds(2), false, &wake);
  ASSERT_EQ(batch.size() + next.size(), 2u);
  EXPECT_NE(batch[0].job_id, next[0].job_id) << "they alternate";
}

TEST(BatchQueue, ForgetsJobsIdleForLongerThanTheLimit) {
  BatchQueueOptions o = Options();
  o.job_idle = absl::Seconds(60);
  BatchQueue q(o);
  absl::Time wake;
  ASSERT_TRUE(q.Push(Work("old", 1, 9, kT0)).ok());
  ASSERT_TRUE(q.Push(Work("queued", 1, 9, kT0)).ok());
  ASSERT_EQ(q.TakeBatch(kT0, true, &wake).size(), 2u);
  ASSERT_TRUE(q.Push(Work("queued", 1, 9, kT0)).ok());  // Stays queued.
  EXPECT_EQ(q.tracked_jobs(), 2);
  ASSERT_TRUE(q.Push(Work("new", 1, 9, kT0 + absl::Seconds(61))).ok());
  // "old" was idle 61 s and is gone; "queued" is as old but has work waiting.
  EXPECT_EQ(q.tracked_jobs(), 2);
  EXPECT_EQ(q.served_tokens("old"), 0);
  EXPECT_EQ(q.served_tokens("queued"), 10);
}

}  // namespace
}  // namespace mkd::teacher
