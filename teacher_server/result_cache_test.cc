#include "teacher_server/result_cache.h"

#include <gtest/gtest.h>

namespace mkd::teacher {
namespace {

Answer Ok(uint64_t id) {
  auto r = std::make_shared<maskedkd::v1::DistillResponse>();
  r->set_micro_batch_id(id);
  return r;
}

Answer Err(uint64_t id) {
  auto r = std::make_shared<maskedkd::v1::DistillResponse>();
  r->set_micro_batch_id(id);
  r->set_code(8);
  return r;
}

TEST(ResultCache, RepeatsWaitForTheFirstAndThenHitTheCache) {
  ResultCache cache(4, absl::Minutes(10));
  std::vector<int> got;
  Answer cached;
  EXPECT_EQ(cache.Begin(
                "j", 7, 0, [&](Answer) { got.push_back(1); }, &cached),
            ResultCache::Lookup::kNew);
  EXPECT_EQ(cache.Begin(
                "j", 7, 0, [&](Answer) { got.push_back(2); }, &cached),
            ResultCache::Lookup::kWaiting);
  EXPECT_EQ(cache.Begin(
                "other", 7, 0, [](Answer) {}, &cached),
            ResultCache::Lookup::kNew);
  cache.Complete("j", 7, Ok(7));
  EXPECT_EQ(got, (std::vector<int>{1, 2}));
  EXPECT_EQ(cache.Begin(
                "j", 7, 0, [&](Answer) { got.push_back(3); }, &cached),
            ResultCache::Lookup::kDone);
  ASSERT_NE(cached, nullptr);
  EXPECT_EQ(cached->micro_batch_id(), 7u);
  EXPECT_EQ(got.size(), 2u);
}

TEST(ResultCache, AReusedIdWithAnotherRequestIsAMismatch) {
  ResultCache cache(4, absl::Minutes(10));
  Answer cached;
  EXPECT_EQ(cache.Begin(
                "j", 7, 111, [](Answer) {}, &cached),
            ResultCache::Lookup::kNew);
  EXPECT_EQ(cache.Begin(
                "j", 7, 222, [](Answer) {}, &cached),
            ResultCache::Lookup::kMismatch);
  cache.Complete("j", 7, Ok(7));
  EXPECT_EQ(cache.Begin(
                "j", 7, 222, [](Answer) {}, &cached),
            ResultCache::Lookup::kMismatch);
  EXPECT_EQ(cache.Begin(
                "j", 7, 111, [](Answer) {}, &cached),
            ResultCache::Lookup::kDone);

  maskedkd::v1::DistillRequest a;
  a.set_micro_batch_size(1);
  a.set_kept_patches(2);
  a.set_kept_indices(std::string(8, '\1'));
  a.set_payload(std::string(64, '\2'));
  maskedkd::v1::DistillRequest b = a;
  b.set_micro_batch_id(99);  // Ids, jobs, weights and timeouts are not content.
  b.set_job_weight(2);
  b.set_timeout_ms(5);
  auto digest = [](const maskedkd::v1::DistillRequest& r) { return RequestDigest(r, r.payload()); };
  EXPECT_EQ(digest(a), digest(b));
  b.mutable_payload()->back() = '\3';
  EXPECT_NE(digest(a), digest(b));
  b = a;
  b.set_kept_indices(std::string(8, '\0'));
  EXPECT_NE(digest(a), digest(b));
  b = a;
  b.set_want_features(true);
  EXPECT_NE(digest(a), digest(b));
  // The same payload from shared memory is the same request: a re-send
  // may move from one data plane to the other.
  b = a;
  b.clear_payload();
  b.mutable_payload_shm()->set_size(64);
  EXPECT_EQ(RequestDigest(b, a.payload()), digest(a));
}

TEST(ResultCache, FailuresAreForgottenSoRetriesRecompute) {
  ResultCache cache(4, absl::Minutes(10));
  Answer cached;
  ASSERT_EQ(cache.Begin(
                "j", 1, 0, [](Answer) {}, &cached),
            ResultCache::Lookup::kNew);
  cache.Complete("j", 1, Err(1));
  EXPECT_EQ(cache.Begin(
                "j", 1, 0, [](Answer) {}, &cached),
            ResultCache::Lookup::kNew);
}

TEST(ResultCache, KeepsOnlyTheLastWindowOfAnswersPerJob) {
  ResultCache cache(2, absl::Minutes(10));
  Answer cached;
  for (uint64_t id = 1; id <= 3; ++id) {
    ASSERT_EQ(cache.Begin(
                  "j", id, 0, [](Answer) {}, &cached),
              ResultCache::Lookup::kNew);
    cache.Complete("j", id, Ok(id));
  }
  EXPECT_EQ(cache.Begin(
                "j", 1, 0, [](Answer) {}, &cached),
            ResultCache::Lookup::kNew);  // Evicted.
  EXPECT_EQ(cache.Begin(
                "j", 3, 0, [](Answer) {}, &cached),
            ResultCache::Lookup::kDone);
}

TEST(ResultCache, ForgetsJobsIdleForLongerThanTheLimit) {
  absl::Time now = absl::FromUnixSeconds(1000);
  ResultCache cache(4, absl::Seconds(60), [&] { return now; });
  Answer cached;
  ASSERT_EQ(cache.Begin(
                "done", 1, 0, [](Answer) {}, &cached),
            ResultCache::Lookup::kNew);
  cache.Complete("done", 1, Ok(1));
  ASSERT_EQ(cache.Begin(
                "busy", 1, 0, [](Answer) {}, &cached),
            ResultCache::Lookup::kNew);
  now += absl::Seconds(59);
  EXPECT_EQ(cache.jobs(), 2);
  EXPECT_EQ(cache.Begin(
                "done", 1, 0, [](Answer) {}, &cached),
            ResultCache::Lookup::kDone);
  now += absl::Seconds(61);
  // "done" has been idle 61 s: forgotten. "busy" is older but still has a
  // micro-batch in flight, whose waiter must get its answer.
  EXPECT_EQ(cache.jobs(), 1);
  EXPECT_EQ(cache.Begin(
                "done", 1, 0, [](Answer) {}, &cached),
            ResultCache::Lookup::kNew);
  bool answered = false;
  ASSERT_EQ(cache.Begin(
                "busy", 1, 0, [&](Answer) { answered = true; }, &cached),
            ResultCache::Lookup::kWaiting);
  cache.Complete("busy", 1, Ok(1));
  EXPECT_TRUE(answered);
}

}  // namespace
}  // namespace mkd::teacher
