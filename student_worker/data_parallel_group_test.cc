// DataParallel with 2 ranks as 2 threads of this process, each with its own
// Gloo process group over loopback TCP: gradients averaged exactly through
// many small buckets, with and without the backward hooks, across
// micro-batch accumulation; broadcast; sums and gathers.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <thread>

#include "common/thread.h"
#include "student_worker/data_parallel.h"
#include "tests/process_util.h"

namespace mkd::student {
namespace {

using ::mkd::testing::FreePort;

// Runs `body(rank, dp)` on 2 ranks at once; `bucket_bytes` small enough to
// make several buckets of the test's parameters.
void OnTwoRanks(const std::function<void(int, DataParallel&)>& body, int64_t bucket_bytes = 64) {
  const int port = FreePort();
  auto rank_main = [&](int rank) {
    DataParallelOptions o;
    o.rank = rank;
    o.world_size = 2;
    o.master_port = port;
    o.timeout = absl::Seconds(20);
    o.bucket_bytes = bucket_bytes;
    auto dp = DataParallel::Connect(o);
    ASSERT_TRUE(dp.ok()) << dp.status();
    EXPECT_EQ((*dp)->backend(), "gloo");
    body(rank, **dp);
  };
  Thread other("mkd-rank-1", [&] { rank_main(1); });
  rank_main(0);
  EXPECT_TRUE(other.Join().ok());
}

// Parameters of several sizes (1 to 120 floats; with 64-byte buckets,
// three buckets of two each).
std::vector<torch::Tensor> Params() {
  std::vector<torch::Tensor> p;
  for (int64_t n : {10, 3, 120, 7, 16, 1}) {
    p.push_back(torch::zeros({n}, torch::requires_grad()));
  }
  return p;
}

// A loss whose gradient w.r.t. parameter i is `scale * (i + 1)` everywhere.
torch::Tensor Loss(const std::vector<torch::Tensor>& params, double scale) {
  torch::Tensor loss = torch::zeros({});
  for (size_t i = 0; i < params.size(); ++i)
    loss = loss + params[i].sum() * (scale * static_cast<double>(i + 1));
  return loss;
}

TEST(DataParallelTest, HooksAverageGradientsAcrossMicroBatchesAndBuckets) {
  OnTwoRanks([](int rank, DataParallel& dp) {
    std::vector<torch::Tensor> params = Params();
    dp.Attach(params);
    for (int step = 0; step < 3; ++step) {  // Hooks re-arm every step.
      for (auto& p : params) p.mutable_grad() = torch::Tensor();
      // Two micro-batches: the first backward accumulates alone, the
      // second (armed) completes the gradients and starts the all-reduces.
      const double a = rank == 0 ? 1.0 : 3.0, b = rank == 0 ? 0.5 : 2.5;
      Loss(params, a).backward();
      dp.ArmHooks();
      Loss(params, b).backward();
      ASSERT_TRUE(dp.AverageGradients().ok());
      // Every bucket's all-reduce started during the backward.
      // In reverse order, closed at 16 floats: {1, 16}, {7, 120}, {3, 10}.
      EXPECT_EQ(dp.buckets(), 3);
      EXPECT_EQ(dp.buckets_started_in_backward(), dp.buckets());
      // Rank 0's gradient is 1.5 * (i+1), rank 1's 5.5 * (i+1): mean 3.5.
      for (size_t i = 0; i < params.size(); ++i) {
        EXPECT_TRUE(torch::equal(params[i].grad(),
                                 torch::full_like(params[i], 3.5 * static_cast<double>(i + 1))))
            << "rank " << rank << " step " << step << " param " << i << ": " << params[i].grad();
      }
    }
  });
}

TEST(DataParallelTest, WithoutHooksAverageGradientsStillAverages) {
  OnTwoRanks(
      [](int rank, DataParallel& dp) {
        std::vector<torch::Tensor> params = Params();
        dp.Attach(params);
        Loss(params, rank == 0 ? 2.0 : 4.0).backward();
        params[5].mutable_grad() = torch::Tensor();  // A parameter the step did not reach.
        ASSERT_TRUE(dp.AverageGradients().ok());
        EXPECT_EQ(dp.buckets(), 1);
        EXPECT_EQ(dp.buckets_started_in_backward(), 0);
        for (size_t i = 0; i < 5; ++i) {
          EXPECT_TRUE(torch::equal(params[i].grad(),
                                   torch::full_like(params[i], 3.0 * static_cast<double>(i + 1))));
        }
        EXPECT_TRUE(torch::equal(params[5].grad(), torch::zeros_like(params[5])));
      },
      /*bucket_bytes=*/int64_t{25} << 20);  // One bucket for everything.
}

TEST(DataParallelTest, BroadcastSumAndGather) {
  OnTwoRanks([](int rank, DataParallel& dp) {
    std::vector<torch::Tensor> t = {torch::full({3}, rank + 1.0), torch::full({2, 2}, rank * 10.0)};
    ASSERT_TRUE(dp.Broadcast(t).ok());
    EXPECT_TRUE(torch::equal(t[0], torch::full({3}, 1.0))) << "rank 0's values everywhere";
    EXPECT_TRUE(torch::equal(t[1], torch::zeros({2, 2})));
    auto sums = dp.SumOverRanks({1.0, rank * 2.5}, "test");
    ASSERT_TRUE(sums.ok());
    EXPECT_EQ(*sums, (std::vector<double>{2.0, 2.5}));
    auto all = dp.AllGather({rank, 7}, "test");
    ASSERT_TRUE(all.ok());
    EXPECT_EQ(*all, (std::vector<std::vector<int64_t>>{{0, 7}, {1, 7}}));
  });
}

TEST(DataParallelTest, ARendezvousNobodyJoinsFailsClearly) {
  DataParallelOptions o;
  o.rank = 1;  // Rank 0 never comes.
  o.world_size = 2;
  o.master_port = FreePort();
  o.timeout = absl::Seconds(1);
  auto dp = DataParallel::Connect(o);
  ASSERT_FALSE(dp.ok());
  EXPECT_EQ(dp.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(dp.status().message()).find("data parallel (rank 1 of 2): rendezvous at "),
            std::string::npos)
      << dp.status();
  o.backend = "nccl";
  dp = DataParallel::Connect(o);
  ASSERT_FALSE(dp.ok());
  EXPECT_NE(std::string(dp.status().message()).find("nccl needs run.device cuda"),
            std::string::npos)
      << dp.status();
}

}  // namespace
}  // namespace mkd::student
