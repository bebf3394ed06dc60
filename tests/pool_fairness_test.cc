// Fair share through the pool, with real processes: jobs sharing one
// teacher that is their bottleneck (one thread, serving one micro-batch per
// forward pass so that its weighted fair queuing decides every dispatch).
// What is measured is what the scheduler divides: the tokens the teacher
// itself counts as served to each job (mkd_teacher_job_served_tokens_total),
// between two scrapes taken while every job is training. Three equal jobs
// get shares with Jain's fairness index >= 0.9; jobs of weight 2 and 1 get
// a 2:1 share within 10%.
//
// A weight-2 job can only take two thirds of the teacher if it keeps work
// queued there: its own compute per step must stay well under the
// teacher's time for it. Under ASan the tiny student needs about 150 ms a
// step, so the weighted test uses a 12 x 256 teacher (about 50 ms per
// micro-batch there; students wait on it ~75% of each step), and the
// teacher's batcher.fair_share_grace_ms (1000 ms, teacher_server/
// batch_queue.h says why) keeps a job's place across the gap between its
// steps.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/pool_util.h"

namespace mkd::pool_test {
namespace {

class FairnessTest : public ::testing::Test {
 protected:
  // One micro-batch of b = 32 / 8 = 4 images at k = 8 is 36 tokens.
  static void SetUpTestSuite() {
    const char* one_micro_batch = "{max_tokens_per_batch: 36, max_queue_delay_us: 0}";
    WriteTeacher("heavy", 6, 128, 21, one_micro_batch);
    WriteTeacher("heavier", 12, 256, 21, one_micro_batch);
  }
};

// Tokens the teacher at `metrics_port` has served each job so far.
std::vector<double> ServedTokens(int metrics_port, const std::vector<std::string>& jobs) {
  const std::string text = Scrape(metrics_port);
  std::vector<double> out;
  for (const auto& job : jobs) {
    out.push_back(std::max(
        0.0, MetricValue(text, "mkd_teacher_job_served_tokens_total{job_id=\"" + job + "\"}")));
  }
  return out;
}

// Runs the jobs against the teacher and returns the tokens it served each
// of them in a window where all of them were training: from the moment
// every job has logged 10 steps to the moment the first has logged
// `steps - 10` (so none has finished). Waits for every job to exit 0.
std::vector<double> SharesWhileAllTrain(const std::string& tag, const Proc& c, const Proc& t,
                                        const std::vector<std::string>& jobs,
                                        const std::vector<double>& weights, int limit_train) {
  std::vector<std::unique_ptr<ChildProcess>> students;
  for (size_t i = 0; i < jobs.size(); ++i) {
    students.push_back(StartStudent(
        tag, jobs[i],
        {"distill.coordinator=" + c.address(), "distill.micro_batches=8",
         "distill.job_id=" + jobs[i], "data.limit_train=" + std::to_string(limit_train),
         "distill.job_weight=" + std::to_string(weights[i])}));
  }
  const size_t steps = static_cast<size_t>(limit_train / 32);  // batch_size 32, one epoch.
  const auto logged = [&](const std::string& job) { return TrainLines(job).size(); };
  const bool started = WaitFor(
      [&] {
        for (const auto& job : jobs) {
          if (logged(job) < 10) return false;
        }
        return true;
      },
      600);
  EXPECT_TRUE(started) << "not every job reached step 10";
  const std::vector<double> before = ServedTokens(t.metrics_port, jobs);
  const bool near_end = WaitFor(
      [&] {
        for (const auto& job : jobs) {
          if (logged(job) >= steps - 10) return true;
        }
        return false;
      },
      600);
  EXPECT_TRUE(near_end) << "no job reached step " << steps - 10;
  const std::vector<double> after = ServedTokens(t.metrics_port, jobs);
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(students[i]->Wait(), 0) << students[i]->err();
  }
  std::vector<double> served;
  std::printf("tokens served in the common window:");
  for (size_t i = 0; i < jobs.size(); ++i) {
    served.push_back(after[i] - before[i]);
    std::printf(" %s %.0f", jobs[i].c_str(), served.back());
  }
  std::printf("\n");
  return served;
}

TEST_F(FairnessTest, EqualJobsGetEqualThroughput) {
  Proc c = StartCoordinator("fair_coord");
  Proc t = StartTeacher("heavy", "fair_t", c.address());
  const std::vector<std::string> jobs = {"fair_a", "fair_b", "fair_c"};
  std::vector<double> x = SharesWhileAllTrain("heavy", c, t, jobs, {1, 1, 1}, 2560);
  ASSERT_EQ(x.size(), 3u);
  for (double v : x) ASSERT_GT(v, 0) << "a job was served nothing in the window";
  double sum = 0, sq = 0;
  for (double v : x) {
    sum += v;
    sq += v * v;
  }
  const double jain = sum * sum / (3 * sq);
  std::printf("Jain's fairness index of the teacher's shares, three equal jobs: %.3f\n", jain);
  EXPECT_GE(jain, 0.9);
}

TEST_F(FairnessTest, WeightsTwoToOneGetATwoToOneShare) {
  Proc c = StartCoordinator("weight_coord");
  Proc t = StartTeacher("heavier", "weight_t", c.address());
  const std::vector<std::string> jobs = {"weight_2", "weight_1"};
  std::vector<double> x = SharesWhileAllTrain("heavier", c, t, jobs, {2, 1}, 1920);
  ASSERT_EQ(x.size(), 2u);
  ASSERT_GT(x[1], 0);
  const double ratio = x[0] / x[1];
  std::printf("teacher's share, weight 2 : weight 1 = %.2f : 1\n", ratio);
  // How teacher-bound each job was (what the share depends on).
  for (const auto& job : jobs) {
    double wait = 0;
    const auto lines = TrainLines(job);
    for (const auto& j : lines) wait += j["bubble"].get<double>();
    std::printf("%s: mean fraction of a step spent waiting on the teacher %.2f\n", job.c_str(),
                lines.empty() ? 0.0 : wait / static_cast<double>(lines.size()));
  }
  EXPECT_NEAR(ratio, 2.0, 0.2);
}

}  // namespace
}  // namespace mkd::pool_test
