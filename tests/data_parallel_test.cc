// Data-parallel students as real mkd-student processes on loopback, over
// Gloo: 2 ranks x batch b reach the weights of 1 rank x batch 2b on the
// same data; a rank killed mid-training makes the other exit with a clear
// error at once, and one that stops answering makes it exit after
// dist.timeout_s; restarting the job resumes it exactly (the same bytes as
// an uninterrupted run); ranks that resume from different checkpoints are
// refused; a 2-rank job distils from a pool as one job.
#include <gtest/gtest.h>

#include <csignal>

#include "tests/pool_util.h"

namespace mkd::pool_test {
namespace {

using testing::FreePort;

// A tiny student in train mode on 512 Fashion-MNIST images, 16 steps of 32
// (one rank) or 2 x 16: no mixing and no random crops, whose draws depend
// on how a batch is split (per-image augmentations do not).
void WriteStudent(const std::string& name, const std::string& mode_lines) {
  std::ofstream(Tmp(name + ".yaml"))
      << mode_lines << "seed: 3\n"
      << "model: {img_size: 28, patch_size: 7, in_chans: 1, embed_dim: 32, depth: 2, "
         "num_heads: 2, num_classes: 10, mean: [0.286], std: [0.353]}\n"
      << "data: {batch_size: 16, limit_train: 512, limit_eval: 100, workers: 1, mixup_alpha: 0, "
         "cutmix_alpha: 0, random_resized_crop: false, randaugment_ops: 0, random_erasing: 0}\n"
      << "optim: {epochs: 1, lr: 0.005, warmup_epochs: 0}\n"
      << "run: {log_every_steps: 1, threads: 1, eval_every_epochs: 0}\n";
}

// Rank `rank` of `world` training config `config` into Tmp(out).
std::unique_ptr<ChildProcess> StartRank(const std::string& config, const std::string& out, int rank,
                                        int world, int port,
                                        const std::vector<std::string>& sets = {},
                                        bool resume = false) {
  std::vector<std::string> args = {"train",
                                   "--config",
                                   Tmp(config + ".yaml"),
                                   "--set",
                                   "run.out_dir=" + Tmp(out),
                                   "--set",
                                   "dist.world_size=" + std::to_string(world),
                                   "--set",
                                   "dist.rank=" + std::to_string(rank),
                                   "--set",
                                   "dist.master_port=" + std::to_string(port)};
  if (resume) args.push_back("--resume");
  for (const auto& s : sets) args.insert(args.end(), {"--set", s});
  return std::make_unique<ChildProcess>(
      "mkd-student", args,
      Tmp(out + "_rank" + std::to_string(rank) + (resume ? "_resume" : "") + "_log"));
}

// Runs a whole job of `world` ranks; every rank must exit 0.
void RunJob(const std::string& config, const std::string& out, int world,
            const std::vector<std::string>& sets = {}, bool resume = false) {
  if (!resume) std::filesystem::remove_all(Tmp(out));
  const int port = FreePort();
  std::vector<std::unique_ptr<ChildProcess>> ranks;
  for (int r = 0; r < world; ++r)
    ranks.push_back(StartRank(config, out, r, world, port, sets, resume));
  for (int r = 0; r < world; ++r) {
    ASSERT_EQ(ranks[r]->Wait(), 0) << "rank " << r << ": " << ranks[r]->err();
  }
}

double MaxDifference(const std::map<std::string, torch::Tensor>& a,
                     const std::map<std::string, torch::Tensor>& b) {
  double worst = 0;
  EXPECT_EQ(a.size(), b.size());
  for (const auto& [key, t] : a) {
    if (b.count(key) == 0) return 1e9;
    worst = std::max(worst, (t - b.at(key)).abs().max().item<double>());
  }
  return worst;
}

std::string FileBytes(const std::string& path) { return testing::SlurpFile(path); }

class DataParallelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    WriteStudent("dp_train", "mode: train\n");
    // The whole 2-rank run the resume tests compare against.
    RunJob("dp_train", "dp_whole", 2);
  }
};

TEST_F(DataParallelTest, TwoRanksOfBatchBMatchOneRankOfBatch2B) {
  RunJob("dp_train", "dp_one", 1, {"data.batch_size=32"});
  const auto one = FinalWeights("dp_one", 16);
  const auto two = FinalWeights("dp_whole", 16);
  ASSERT_FALSE(one.empty());
  const double diff = MaxDifference(one, two);
  // Training moved the weights far beyond the tolerance: the comparison is
  // not between two untouched initialisations.
  WriteStudent("dp_init", "mode: train\n");
  RunJob("dp_init", "dp_init", 1, {"data.batch_size=32", "run.max_steps=1"});
  const double moved = MaxDifference(one, FinalWeights("dp_init", 1));
  std::printf(
      "2 ranks x 16 vs 1 rank x 32 after 16 AdamW steps: max |weight difference| %.3g "
      "(training moved weights by up to %.3g since step 1)\n",
      diff, moved);
  // Only the order of float additions differs (a mean of two means vs one
  // mean of 32), which AdamW's normalisation can amplify for tiny
  // gradients: 3.5e-6 measured.
  EXPECT_LT(diff, 1e-4);
  EXPECT_GT(moved, 100 * diff);
  // The log is the job's: one metrics.jsonl (rank 0's), the loss averaged.
  const auto lines = TrainLines("dp_whole");
  ASSERT_EQ(lines.size(), 16u);
  EXPECT_EQ(lines[0]["ranks"], 2);
  EXPECT_NEAR(lines[15]["loss"].get<double>(), TrainLines("dp_one")[15]["loss"].get<double>(),
              1e-4);
}

// dist.backend named, one rank: the group is built and used (as a one-rank
// NCCL job on one GPU would be), and the run is the run without it.
TEST_F(DataParallelTest, OneRankWithANamedBackendTrainsAsWithout) {
  RunJob("dp_train", "dp_solo", 1, {"data.batch_size=32", "run.max_steps=4"});
  RunJob("dp_train", "dp_solo_gloo", 1,
         {"data.batch_size=32", "run.max_steps=4", "dist.backend=gloo"});
  EXPECT_NE(testing::SlurpFile(Tmp("dp_solo_gloo_rank0_log.err")).find("joined the job (gloo"),
            std::string::npos);
  EXPECT_EQ(MaxDifference(FinalWeights("dp_solo", 4), FinalWeights("dp_solo_gloo", 4)), 0.0);
}

TEST_F(DataParallelTest, MaskedDistillationMatchesToo) {
  // The in-process teacher: MaskedKD's selection is per image, so it does
  // not care how the batch is split either.
  WriteTeacher("dp_teacher", 2, 32, 11);
  WriteStudent("dp_distill",
               "mode: distill\ndistill: {teacher_model: " + Tmp("dp_teacher_model.yaml") +
                   ", teacher_weights: " + Tmp("dp_teacher.safetensors") +
                   ", keep_ratio: 0.5, micro_batches: 2}\n");
  RunJob("dp_distill", "dp_distill_one", 1, {"data.batch_size=32", "run.max_steps=8"});
  RunJob("dp_distill", "dp_distill_two", 2, {"run.max_steps=8"});
  const double diff =
      MaxDifference(FinalWeights("dp_distill_one", 8), FinalWeights("dp_distill_two", 8));
  std::printf("MaskedKD, 2 ranks x 16 (m 2) vs 1 rank x 32 (m 2), 8 steps: max |diff| %.3g\n",
              diff);
  EXPECT_LT(diff, 1e-4);
}

TEST_F(DataParallelTest, AKilledRankEndsTheJobAtOnceAndARestartResumesExactly) {
  std::filesystem::remove_all(Tmp("dp_kill"));
  const int port = FreePort();
  auto r0 = StartRank("dp_train", "dp_kill", 0, 2, port, {"run.checkpoint_every_steps=4"});
  auto r1 = StartRank("dp_train", "dp_kill", 1, 2, port, {"run.checkpoint_every_steps=4"});
  ASSERT_TRUE(r1->WaitForLine("step 5/16").has_value()) << r1->err();
  r1->Signal(SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return !r0->Running(); }, 30)) << "rank 0 hangs";
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  std::printf("rank 0 exited %.2f s after rank 1 was killed\n", took);
  EXPECT_EQ(r0->Wait(), 1);
  const std::string err = r0->err();
  EXPECT_NE(err.find("data parallel (rank 0 of 2, gloo)"), std::string::npos) << err;
  EXPECT_NE(err.find("A peer rank exited"), std::string::npos) << err;
  EXPECT_NE(err.find("--resume"), std::string::npos) << err;
  // A restart of both ranks continues from the last checkpoint and ends
  // with the very bytes of the uninterrupted run.
  RunJob("dp_train", "dp_kill", 2, {"run.checkpoint_every_steps=4"}, /*resume=*/true);
  EXPECT_EQ(FileBytes(Tmp("dp_kill") + "/checkpoints/step_00000016.model.safetensors"),
            FileBytes(Tmp("dp_whole") + "/checkpoints/step_00000016.model.safetensors"));
  EXPECT_EQ(FileBytes(Tmp("dp_kill") + "/checkpoints/step_00000016.state.safetensors"),
            FileBytes(Tmp("dp_whole") + "/checkpoints/step_00000016.state.safetensors"));
  ExpectEveryStepOnce("dp_kill", 16);
}

TEST_F(DataParallelTest, ARankThatStopsAnsweringEndsTheJobAfterTheTimeout) {
  std::filesystem::remove_all(Tmp("dp_stop"));
  const int port = FreePort();
  const std::vector<std::string> sets = {"dist.timeout_s=3"};
  auto r0 = StartRank("dp_train", "dp_stop", 0, 2, port, sets);
  auto r1 = StartRank("dp_train", "dp_stop", 1, 2, port, sets);
  ASSERT_TRUE(r1->WaitForLine("step 3/16").has_value()) << r1->err();
  r1->Signal(SIGSTOP);  // Alive, connections open, silent: only a timeout tells.
  const auto stopped = std::chrono::steady_clock::now();
  const bool ended = WaitFor([&] { return !r0->Running(); }, 60);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  r1->Signal(SIGKILL);
  ASSERT_TRUE(ended) << "rank 0 hangs";
  std::printf("rank 0 exited %.2f s after rank 1 stopped (dist.timeout_s 3)\n", took);
  EXPECT_EQ(r0->Wait(), 1);
  EXPECT_NE(r0->err().find("did not answer within dist.timeout_s (3 s)"), std::string::npos)
      << r0->err();
}

TEST_F(DataParallelTest, RanksThatResumeFromDifferentStepsAreRefused) {
  // Rank 1 finds another run's checkpoint (say, a volume it does not
  // share with rank 0): resuming would mix two trainings.
  std::filesystem::remove_all(Tmp("dp_split"));
  std::filesystem::create_directories(Tmp("dp_split"));
  std::filesystem::copy(Tmp("dp_whole") + "/checkpoints", Tmp("dp_split") + "/checkpoints");
  const int port = FreePort();
  auto r0 = StartRank("dp_train", "dp_split", 0, 2, port, {}, /*resume=*/true);
  auto r1 = StartRank("dp_train", "dp_split_empty", 1, 2, port, {}, /*resume=*/true);
  EXPECT_EQ(r0->Wait(), 1);
  EXPECT_EQ(r1->Wait(), 1);
  EXPECT_NE(r1->err().find("rank 1 restored step 0 but rank 0 restored step 16; every rank must "
                           "read the same run.out_dir"),
            std::string::npos)
      << r1->err();
}

TEST_F(DataParallelTest, ABadRankIsRefusedBeforeAnythingStarts) {
  auto r = StartRank("dp_train", "dp_bad", 2, 2, FreePort());
  EXPECT_EQ(r->Wait(), 1);
  EXPECT_NE(r->err().find("config key 'dist.rank': must be below dist.world_size 2"),
            std::string::npos)
      << r->err();
}

// Two ranks of one job distil from a pool: the coordinator shows one job
// with both ranks, each rank streams to the job's teacher, and the job
// trains every step once.
TEST_F(DataParallelTest, ATwoRankJobDistilsFromThePoolAsOneJob) {
  WriteTeacher("dp_pool", 2, 32, 11);
  Proc c = StartCoordinator("dp_pool_coord");
  Proc t = StartTeacher("dp_pool", "dp_pool_t", c.address());
  std::filesystem::remove_all(Tmp("dp_pool_job"));
  const int port = FreePort();
  const std::vector<std::string> sets = {"distill.coordinator=" + c.address(),
                                         "data.limit_train=2048", "distill.job_id=dp-job",
                                         "run.metrics_listen=127.0.0.1:0"};
  auto r0 = StartRank("dp_pool_student", "dp_pool_job", 0, 2, port, sets);
  auto r1 = StartRank("dp_pool_student", "dp_pool_job", 1, 2, port, sets);
  ASSERT_TRUE(WaitFor([&] {
    auto jobs = ListJobs(c);
    return jobs.jobs_size() == 1 && jobs.jobs(0).ranks() == 2;
  })) << r0->err()
      << r1->err();
  const auto jobs = ListJobs(c);
  EXPECT_EQ(jobs.jobs(0).info().job_id(), "dp-job");
  EXPECT_EQ(jobs.jobs(0).info().world_size(), 2);
  ASSERT_EQ(jobs.jobs(0).teachers_size(), 1);
  EXPECT_EQ(jobs.jobs(0).teachers(0), t.address());
  // Each rank's /metrics carries its rank, and passes promtool.
  auto line = r1->WaitForLine("metrics on port");
  ASSERT_TRUE(line.has_value()) << r1->err();
  ASSERT_TRUE(r1->WaitForLine("rank 1/2: epoch").has_value()) << r1->err();
  const std::string metrics = Scrape(NumberAfter(*line, "on port "));
  EXPECT_NE(metrics.find("mkd_student_step{job_id=\"dp-job\",rank=\"1\"}"), std::string::npos)
      << metrics;
  EXPECT_EQ(Promtool(metrics, "dp_rank1"), "");
  ASSERT_EQ(r0->Wait(), 0) << r0->err();
  ASSERT_EQ(r1->Wait(), 0) << r1->err();
  // 2048 images over 2 ranks of 32: 32 steps, each logged once.
  ExpectEveryStepOnce("dp_pool_job", 2048 / 64);
  for (const auto& rank : {r0.get(), r1.get()}) {
    EXPECT_NE(rank->out().find("teacher GFLOPs"), std::string::npos) << rank->out();
  }
}

}  // namespace
}  // namespace mkd::pool_test
