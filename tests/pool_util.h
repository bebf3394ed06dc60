// Helpers for the pool's multi-process tests: tiny seeded teachers written
// to files, and mkd-coordinator, mkd-teacher and mkd-student started as real
// processes on loopback. Header-only; test code.
#ifndef MKD_TESTS_POOL_UTIL_H_
#define MKD_TESTS_POOL_UTIL_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "common/tensor_util.h"
#include "common/vit.h"
#include "common/vit_weights.h"
#include "maskedkd/v1/coordinator.grpc.pb.h"
#include "tests/process_util.h"

namespace mkd::pool_test {

using testing::ChildProcess;
using testing::NumberAfter;

inline std::string Tmp(const std::string& name) { return ::testing::TempDir() + "/pool_" + name; }

// A seeded random teacher of `depth` x `dim` on Fashion-MNIST's 28x28 with
// 7x7 patches (16 tokens), its server config, and a distill config for a
// tiny student. Files are named after `tag`.
inline void WriteTeacher(const std::string& tag, int depth, int dim, int seed,
                         const std::string& batcher = "{max_queue_delay_us: 500}") {
  const std::string model =
      "img_size: 28\npatch_size: 7\nin_chans: 1\nembed_dim: " + std::to_string(dim) +
      "\ndepth: " + std::to_string(depth) + "\nnum_heads: 2\nnum_classes: 10\n" +
      "mean: [0.286]\nstd: [0.353]\n";
  std::ofstream(Tmp(tag + "_model.yaml")) << model;
  auto config = ParseViTConfigYaml(model);
  ASSERT_TRUE(config.ok());
  torch::manual_seed(seed);
  VisionTransformer teacher(*config);
  ASSERT_TRUE(SaveViTWeights(*teacher, Tmp(tag + ".safetensors")).ok());
  std::ofstream(Tmp(tag + "_server.yaml"))
      << "model: " << Tmp(tag + "_model.yaml") << "\nweights: " << Tmp(tag + ".safetensors")
      << "\nlisten: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\nthreads: 1\n"
      << "capacity_tokens_per_s: 100000\nbatcher: " << batcher << "\n"
      << "tls: {insecure: true}\nauth: {insecure: true}\n";
  std::ofstream(Tmp(tag + "_student.yaml"))
      << "mode: distill\nseed: 3\n"
      << "model: {img_size: 28, patch_size: 7, in_chans: 1, embed_dim: 16, depth: 1, "
         "num_heads: 2, num_classes: 10, mean: [0.286], std: [0.353]}\n"
      << "data: {batch_size: 32, limit_train: 16384, limit_eval: 64, workers: 1}\n"
      << "optim: {epochs: 1, lr: 0.05}\n"
      << "distill: {teacher_model: " << Tmp(tag + "_model.yaml")
      << ", teacher_weights: " << Tmp(tag + ".safetensors")
      << ", keep_ratio: 0.5, micro_batches: 2, wire_dtype: fp32, teacher_timeout_ms: 20000}\n"
      << "run: {log_every_steps: 1, threads: 1, eval_every_epochs: 0}\n"
      << "tls: {insecure: true}\n";
}

struct Proc {
  std::unique_ptr<ChildProcess> process;
  int port = -1, metrics_port = -1;
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

// Plaintext and open on loopback, as asked for by name; tests/tls_test.cc,
// pool_test's mutual-TLS pool and pool_auth_test pass their own sets.
inline const std::vector<std::string> kInsecure = {"tls.insecure=true", "auth.insecure=true"};

// mkd-coordinator with short leases (heartbeat 0.1 s, lease 0.6 s), on
// `port` (0: any), with `tls` (config sets).
inline Proc StartCoordinator(const std::string& name, int port = 0,
                             const std::vector<std::string>& tls = kInsecure) {
  Proc p;
  std::vector<std::string> args = {"--set", "listen=127.0.0.1:" + std::to_string(port),
                                   "--set", "metrics_listen=127.0.0.1:0",
                                   "--set", "heartbeat_s=0.1",
                                   "--set", "lease_s=0.6",
                                   "--set", "settle_s=0.3",
                                   "--set", "explore_steps=3"};
  for (const auto& s : tls) args.insert(args.end(), {"--set", s});
  p.process = std::make_unique<ChildProcess>("mkd-coordinator", args, Tmp(name));
  auto line = p.process->WaitForLine("listening on port");
  EXPECT_TRUE(line.has_value()) << p.process->err();
  if (!line) return p;
  p.port = NumberAfter(*line, "on port ");
  p.metrics_port = NumberAfter(*line, "metrics port ");
  return p;
}

// mkd-teacher serving `tag`'s weights, in the pool at `coordinator`, with
// `sets` on top of the config (which is plaintext).
inline Proc StartTeacher(const std::string& tag, const std::string& name,
                         const std::string& coordinator,
                         const std::vector<std::string>& sets = {}) {
  Proc p;
  std::vector<std::string> args = {"--config", Tmp(tag + "_server.yaml"), "--set",
                                   "coordinator=" + coordinator};
  for (const auto& s : sets) args.insert(args.end(), {"--set", s});
  p.process = std::make_unique<ChildProcess>("mkd-teacher", args, Tmp(name));
  auto line = p.process->WaitForLine("] serving ");
  EXPECT_TRUE(line.has_value()) << p.process->err();
  if (!line) return p;
  p.port = NumberAfter(*line, " on port ");
  p.metrics_port = NumberAfter(*line, "metrics port ");
  EXPECT_TRUE(p.process->WaitForLine("joined the pool").has_value()) << p.process->err();
  return p;
}

// mkd-student training `tag`'s distill config into Tmp(name), with `sets`.
// With `resume`, continues the run already in Tmp(name) (--resume).
inline std::unique_ptr<ChildProcess> StartStudent(const std::string& tag, const std::string& name,
                                                  const std::vector<std::string>& sets,
                                                  bool resume = false) {
  std::vector<std::string> args = {"train", "--config", Tmp(tag + "_student.yaml"), "--set",
                                   "run.out_dir=" + Tmp(name)};
  if (resume) args.push_back("--resume");
  for (const auto& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  if (!resume) std::filesystem::remove_all(Tmp(name));
  return std::make_unique<ChildProcess>("mkd-student", args,
                                        Tmp(name + (resume ? "_resume_log" : "_log")));
}

// The train lines of a run's metrics.jsonl.
inline std::vector<nlohmann::json> TrainLines(const std::string& name) {
  std::vector<nlohmann::json> out;
  std::istringstream lines(testing::SlurpFile(Tmp(name) + "/metrics.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j["type"] == "train") out.push_back(j);
  }
  return out;
}

inline ::maskedkd::v1::ListJobsResponse ListJobs(const Proc& coordinator) {
  auto stub = ::maskedkd::v1::CoordinatorService::NewStub(
      grpc::CreateChannel(coordinator.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  ::maskedkd::v1::ListJobsResponse out;
  stub->ListJobs(&ctx, ::maskedkd::v1::ListJobsRequest(), &out);
  return out;
}

// promtool's complaints about a /metrics text ("": none).
inline std::string Promtool(const std::string& text, const std::string& name) {
  std::ofstream(Tmp(name + ".prom")) << text;
  const std::string cmd =
      "promtool check metrics < " + Tmp(name + ".prom") + " > " + Tmp(name + ".promtool") + " 2>&1";
  return std::system(cmd.c_str()) == 0 ? "" : testing::SlurpFile(Tmp(name + ".promtool"));
}

// GET /metrics on loopback ("" if it fails).
inline std::string Scrape(int port) {
  httplib::Client http("127.0.0.1", port);
  auto res = http.Get("/metrics");
  return res ? res->body : "";
}

// The value of the series `series` (name and labels exactly as exposed,
// say `mkd_teacher_shm_regions` or `x_total{k="v"}`) in a /metrics text;
// -1 when absent.
inline double MetricValue(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::atof(line.c_str() + series.size() + 1);
  }
  return -1;
}

// Polls (every 50 ms, at most `seconds`) until `done`.
inline bool WaitFor(const std::function<bool()>& done, double seconds = 60) {
  for (int i = 0; i < seconds * 20 && !done(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

// Every step 1..n logged exactly once.
inline void ExpectEveryStepOnce(const std::string& name, int64_t n) {
  std::map<int64_t, int> seen;
  for (const auto& j : TrainLines(name)) ++seen[j["step"].get<int64_t>()];
  ASSERT_EQ(static_cast<int64_t>(seen.size()), n) << name;
  for (int64_t s = 1; s <= n; ++s) EXPECT_EQ(seen[s], 1) << name << " step " << s;
}

// The final student weights of a run.
inline std::map<std::string, torch::Tensor> FinalWeights(const std::string& name, int64_t step) {
  char file[64];
  std::snprintf(file, sizeof(file), "/checkpoints/step_%08lld.model.safetensors",
                static_cast<long long>(step));
  std::map<std::string, torch::Tensor> out;
  auto f = ReadSafetensors(Tmp(name) + file);
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return out;
  for (const auto& [key, array] : f->tensors) out[key] = *ToTensor(array);
  return out;
}

}  // namespace mkd::pool_test

#endif  // MKD_TESTS_POOL_UTIL_H_
