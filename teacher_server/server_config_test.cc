#include "teacher_server/server_config.h"

#include <gtest/gtest.h>

namespace mkd::teacher {
namespace {

TEST(ServerConfig, ParsesKeysAndOverrides) {
  auto c = ParseTeacherServerConfig(
      "model: deit_tiny_patch16_224\nweights: t.safetensors\nbatcher:\n  max_queue_delay_us: 500\n",
      {"listen=127.0.0.1:0", "model.num_classes=10", "dtype=bf16", "job_idle_s=30",
       "limits.max_streams_per_job=3", "limits.idle_stream_timeout_s=0", "tls.insecure=true",
       "auth.insecure=true"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.embed_dim, 192);
  EXPECT_EQ(c->model.num_classes, 10);
  EXPECT_EQ(c->batcher.max_queue_delay_us, 500);
  EXPECT_EQ(c->listen, "127.0.0.1:0");
  EXPECT_EQ(c->dtype, DType::kBF16);
  EXPECT_EQ(c->job_idle_s, 30);
  EXPECT_EQ(c->limits.max_streams_per_job, 3);
  EXPECT_EQ(c->limits.idle_stream_timeout_s, 0);
  EXPECT_EQ(c->limits.max_in_flight_per_job, 256);  // The default.
}

TEST(ServerConfig, ErrorsNameTheKey) {
  struct Case {
    std::string yaml, needle;
  } cases[] = {
      {"weights: w\n", "'model': is required"},
      {"model: deit_tiny_patch16_224\n", "'weights': is required"},
      {"model: deit_tiny_patch16_224\nweights: w\nbatchr:\n  x: 1\n", "'batchr.x': unknown key"},
      {"model: deit_tiny_patch16_224\nweights: w\ndtype: int8\n", "'dtype': must be fp32"},
      {"model: deit_tiny_patch16_224\nweights: w\nlisten: nohost\n",
       "'listen': expected host:port"},
      {"model: deit_tiny_patch16_224\nweights: w\nlisten: h:99999999999999999999\n",
       "'listen': expected host:port"},
      {"model: deit_tiny_patch16_224\nweights: w\nbatcher:\n  max_queued: lots\n",
       "'batcher.max_queued': expected an integer"},
      {"model: deit_tiny_patch16_224\nweights: w\ndevice: tpu\n", "'device': must be cpu"},
      {"model: deit_tiny_patch16_224\nweights: w\njob_idle_s: 0\n",
       "'job_idle_s': must be at least 1"},
      {"model: deit_tiny_patch16_224\nweights: w\nmax_message_bytes: 4294967296\n",
       "'max_message_bytes': must be at most 2147483647"},
      {"model: deit_tiny_patch16_224\nweights: w\nlimits:\n  max_in_flight_per_job: -1\n",
       "'limits.max_in_flight_per_job': must be >= 0"},
  };
  for (const auto& c : cases) {
    auto r = ParseTeacherServerConfig(c.yaml, {});
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.needle), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace mkd::teacher
