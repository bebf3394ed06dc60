#include "student_worker/dist_env.h"

#include <gtest/gtest.h>

#include <map>

namespace mkd::student {
namespace {

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(DistEnvTest, NothingSetIsOneRank) {
  auto d = ResolveDistEnv(DistConfig(), Env({}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->world_size, 1);
  EXPECT_EQ(d->rank, 0);
  EXPECT_EQ(d->local_rank, 0);
  EXPECT_EQ(d->master_addr, "127.0.0.1");
  EXPECT_EQ(d->master_port, 29500);
}

TEST(DistEnvTest, TakesWhatTorchrunAndPyTorchJobSet) {
  auto d = ResolveDistEnv(DistConfig(), Env({{"WORLD_SIZE", "4"},
                                             {"RANK", "3"},
                                             {"LOCAL_RANK", "1"},
                                             {"MASTER_ADDR", "job-master-0"},
                                             {"MASTER_PORT", "23456"}}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->world_size, 4);
  EXPECT_EQ(d->rank, 3);
  EXPECT_EQ(d->local_rank, 1);
  EXPECT_EQ(d->master_addr, "job-master-0");
  EXPECT_EQ(d->master_port, 23456);
  EXPECT_EQ(DeviceForRank("cuda", *d), "cuda:1");
  EXPECT_EQ(DeviceForRank("cuda:0", *d), "cuda:0") << "a device named in full stays";
  EXPECT_EQ(DeviceForRank("cpu", *d), "cpu");
}

TEST(DistEnvTest, ConfigKeysWinOverTheEnvironment) {
  DistConfig c;
  c.world_size = 2;
  c.rank = 1;
  c.master_port = 30000;
  auto d = ResolveDistEnv(c, Env({{"WORLD_SIZE", "8"}, {"RANK", "5"}, {"MASTER_PORT", "1"}}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->world_size, 2);
  EXPECT_EQ(d->rank, 1);
  EXPECT_EQ(d->master_port, 30000);
}

TEST(DistEnvTest, ErrorsNameTheVariable) {
  auto expect = [](const std::map<std::string, std::string>& vars, const std::string& fragment) {
    auto d = ResolveDistEnv(DistConfig(), Env(vars));
    ASSERT_FALSE(d.ok()) << fragment;
    EXPECT_NE(std::string(d.status().message()).find(fragment), std::string::npos) << d.status();
  };
  expect({{"WORLD_SIZE", "two"}}, "environment variable WORLD_SIZE: 'two' is not an integer");
  expect({{"WORLD_SIZE", "0"}}, "WORLD_SIZE: '0' is not an integer in [1,");
  expect({{"WORLD_SIZE", "2"}, {"RANK", "-1"}}, "environment variable RANK: '-1'");
  expect({{"WORLD_SIZE", "2"}, {"RANK", "2"}},
         "rank 2 (dist.rank or $RANK) is not in [0, world_size 2)");
  expect({{"WORLD_SIZE", "2"}}, "a job of 2 ranks needs each process's rank");
  expect({{"MASTER_PORT", "70000"}}, "environment variable MASTER_PORT: '70000'");
  expect({{"LOCAL_RANK", "x"}}, "environment variable LOCAL_RANK");
}

TEST(DistEnvTest, ConfigKeysAreChecked) {
  auto expect = [](const std::string& set, const std::string& fragment) {
    auto c = ParseTrainConfig("mode: train\nmodel: deit_tiny_patch16_224\n", {set});
    ASSERT_FALSE(c.ok()) << set;
    EXPECT_NE(std::string(c.status().message()).find(fragment), std::string::npos) << c.status();
  };
  expect("dist.world_size=-1", "config key 'dist.world_size': must be >= 0");
  expect("dist.backend=mpi", "config key 'dist.backend': must be auto, gloo or nccl, got 'mpi'");
  expect("dist.timeout_s=0", "config key 'dist.timeout_s': must be positive");
  expect("dist.bucket_mb=0", "config key 'dist.bucket_mb': must be positive");
  expect("dist.master_port=65536", "config key 'dist.master_port'");
  expect("dist.rank=x", "dist.rank");
  auto ok = ParseTrainConfig("mode: train\nmodel: deit_tiny_patch16_224\n",
                             {"dist.world_size=2", "dist.rank=1", "dist.backend=gloo"});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->dist.world_size, 2);
  EXPECT_EQ(ok->dist.rank, 1);
}

}  // namespace
}  // namespace mkd::student
