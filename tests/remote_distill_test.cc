// Remote distillation with real processes on loopback: an mkd-teacher
// server and mkd-student workers. Checks that a remote teacher with an fp32
// wire trains exactly like the in-process one, that a student survives its
// teacher being killed and restarted, that an independent gRPC client
// (Debian's python3-grpcio) gets correct logits and clean INVALID_ARGUMENT
// answers, and that the server's /metrics passes promtool.
#include <gtest/gtest.h>
#include <httplib.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/masking.h"
#include "common/npy.h"
#include "common/tensor_util.h"
#include "common/vit.h"
#include "common/vit_weights.h"
#include "tests/process_util.h"

namespace mkd {
namespace {

namespace fs = std::filesystem;
using testing::ChildProcess;
using testing::NumberAfter;

std::string Tmp(const std::string& name) { return ::testing::TempDir() + "/remote_" + name; }

constexpr char kTeacherModel[] =
    "img_size: 28\npatch_size: 7\nin_chans: 1\nembed_dim: 32\ndepth: 2\nnum_heads: 2\n"
    "num_classes: 10\nmean: [0.286]\nstd: [0.353]\n";

// A seeded random teacher (its logits are what matters here, not its
// accuracy), its server config, and a distill config for the student.
void WriteFiles() {
  std::ofstream(Tmp("teacher_model.yaml")) << kTeacherModel;
  auto config = ParseViTConfigYaml(kTeacherModel);
  ASSERT_TRUE(config.ok());
  torch::manual_seed(11);
  VisionTransformer teacher(*config);
  ASSERT_TRUE(SaveViTWeights(*teacher, Tmp("teacher.safetensors")).ok());
  std::ofstream(Tmp("server.yaml"))
      << "model: " << Tmp("teacher_model.yaml") << "\nweights: " << Tmp("teacher.safetensors")
      << "\nlisten: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\nthreads: 1\n"
      << "batcher: {max_queue_delay_us: 500}\ntls: {insecure: true}\nauth: {insecure: true}\n";
  std::ofstream(Tmp("student.yaml"))
      << "mode: distill\n"
      << "model: {img_size: 28, patch_size: 7, in_chans: 1, embed_dim: 16, depth: 1, "
         "num_heads: 2, num_classes: 10, mean: [0.286], std: [0.353]}\n"
      << "data: {batch_size: 32, limit_train: 256, limit_eval: 64}\n"
      << "optim: {epochs: 1, lr: 0.05}\n"
      << "distill: {teacher_model: " << Tmp("teacher_model.yaml")
      << ", teacher_weights: " << Tmp("teacher.safetensors")
      << ", keep_ratio: 0.5, micro_batches: 2, wire_dtype: fp32}\n"
      << "run: {log_every_steps: 1, threads: 1, eval_every_epochs: 0}\n"
      << "tls: {insecure: true}\n";
}

struct Server {
  std::unique_ptr<ChildProcess> process;
  int port = -1, metrics_port = -1;
};

Server StartTeacher(const std::string& name, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"--config", Tmp("server.yaml")};
  args.insert(args.end(), extra.begin(), extra.end());
  Server s;
  s.process = std::make_unique<ChildProcess>("mkd-teacher", args, Tmp(name));
  auto line = s.process->WaitForLine("] serving ");
  EXPECT_TRUE(line.has_value()) << s.process->err();
  if (!line) return s;
  s.port = NumberAfter(*line, " on port ");
  s.metrics_port = NumberAfter(*line, "metrics port ");
  return s;
}

// (step, loss, kd) per logged training step of a run.
std::vector<std::array<double, 3>> Trajectory(const std::string& out_dir) {
  std::vector<std::array<double, 3>> steps;
  std::istringstream lines(testing::SlurpFile(out_dir + "/metrics.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "train") steps.push_back({j["step"].get<double>(), j["loss"], j["kd"]});
  }
  return steps;
}

int RunStudent(const std::string& name, const std::vector<std::string>& sets) {
  std::vector<std::string> args = {"train", "--config", Tmp("student.yaml"), "--set",
                                   "run.out_dir=" + Tmp(name)};
  for (const auto& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  fs::remove_all(Tmp(name));
  ChildProcess student("mkd-student", args, Tmp(name + "_log"));
  int rc = student.Wait();
  EXPECT_EQ(rc, 0) << student.err();
  return rc;
}

std::string Promtool(const std::string& text) {
  std::ofstream(Tmp("metrics.txt")) << text;
  std::string cmd =
      "promtool check metrics < " + Tmp("metrics.txt") + " > " + Tmp("promtool.txt") + " 2>&1";
  int rc = std::system(cmd.c_str());
  return rc == 0 ? "" : "promtool failed: " + testing::SlurpFile(Tmp("promtool.txt"));
}

class RemoteDistillTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { WriteFiles(); }
};

TEST_F(RemoteDistillTest, RemoteTeacherTrainsLikeTheInProcessOne) {
  Server server = StartTeacher("server1");
  ASSERT_GT(server.port, 0);
  ASSERT_EQ(RunStudent("inproc", {}), 0);
  ASSERT_EQ(
      RunStudent("remote", {"distill.teacher_address=127.0.0.1:" + std::to_string(server.port)}),
      0);
  auto a = Trajectory(Tmp("inproc")), b = Trajectory(Tmp("remote"));
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i][0], b[i][0]);
    EXPECT_NEAR(a[i][1], b[i][1], 1e-5 * std::max(1.0, std::abs(a[i][1]))) << "step " << i;
    EXPECT_NEAR(a[i][2], b[i][2], 1e-5 * std::max(1.0, std::abs(a[i][2]))) << "step " << i;
  }
  EXPECT_GT(a[0][2], 0.0);  // KD really was part of the loss.

  // The server's /metrics, from a process with LibTorch and OpenBLAS loaded.
  httplib::Client http("127.0.0.1", server.metrics_port);
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("mkd_teacher_requests_total{code=\"OK\"} 16"), std::string::npos)
      << res->body;  // 8 steps x 2 micro-batches.
  EXPECT_EQ(Promtool(res->body), "");
  server.process->Signal(SIGTERM);
  EXPECT_EQ(server.process->Wait(), 0) << server.process->err();
}

TEST_F(RemoteDistillTest, StudentSurvivesTeacherKilledAndRestarted) {
  Server first = StartTeacher("server_a");
  ASSERT_GT(first.port, 0);
  const std::string port = std::to_string(first.port);
  fs::remove_all(Tmp("restart"));
  ChildProcess student(
      "mkd-student",
      {"train", "--config", Tmp("student.yaml"), "--set", "run.out_dir=" + Tmp("restart"), "--set",
       "optim.epochs=30", "--set", "distill.teacher_address=127.0.0.1:" + port},
      Tmp("restart_log"));
  ASSERT_TRUE(student.WaitForLine("step 2/240").has_value()) << student.err();
  first.process->Signal(SIGKILL);
  EXPECT_EQ(first.process->Wait(), 128 + SIGKILL);
  Server second = StartTeacher("server_b", {"--set", "listen=127.0.0.1:" + port});
  ASSERT_EQ(second.port, first.port);
  ASSERT_EQ(student.Wait(), 0) << student.err();
  EXPECT_NE(student.out().find("summary: mode distill, 240 steps"), std::string::npos)
      << student.out();
  EXPECT_NE(student.err().find("reconnecting"), std::string::npos) << student.err();
}

TEST_F(RemoteDistillTest, UnreachableTeacherIsAClearError) {
  ChildProcess student(
      "mkd-student",
      {"train", "--config", Tmp("student.yaml"), "--set", "run.out_dir=" + Tmp("unreachable"),
       "--set", "distill.teacher_address=127.0.0.1:1", "--set", "distill.teacher_timeout_ms=500"},
      Tmp("unreachable_log"));
  // GetModelInfo waits up to the reconnect timeout (60 s) for a server.
  EXPECT_EQ(student.Wait(), 1);
  EXPECT_NE(student.err().find("teacher at '127.0.0.1:1'"), std::string::npos) << student.err();
}

TEST_F(RemoteDistillTest, TeacherBinaryRejectsBadInputWithOneLine) {
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string needle;
  } cases[] = {
      {{"--config", Tmp("missing.yaml")}, 1, "missing.yaml"},
      {{"--config", Tmp("server.yaml"), "--set", "dtype=int8"}, 1, "'dtype': must be fp32"},
      {{"--config", Tmp("server.yaml"), "--set", "weights=" + Tmp("nope.safetensors")},
       1,
       "nope.safetensors"},
      {{"--config", Tmp("server.yaml"), "--set", "batcher.max_queued=-1"},
       1,
       "'batcher.max_queued': must be positive"},
      {{"--confg", "x"}, 2, "--confg"},
  };
  for (const auto& c : cases) {
    ChildProcess teacher("mkd-teacher", c.args, Tmp("bad_teacher"));
    EXPECT_EQ(teacher.Wait(), c.code) << c.needle;
    const std::string err = teacher.err();
    EXPECT_NE(err.find(c.needle), std::string::npos) << err;
    EXPECT_NE(err.find("mkd-teacher: error: "), std::string::npos) << err;
  }
  // A port that is taken is a clear error, not a silently shared socket.
  Server first = StartTeacher("server_port");
  ASSERT_GT(first.port, 0);
  ChildProcess second(
      "mkd-teacher",
      {"--config", Tmp("server.yaml"), "--set", "listen=127.0.0.1:" + std::to_string(first.port)},
      Tmp("server_port2"));
  EXPECT_EQ(second.Wait(), 1);
  EXPECT_NE(second.err().find("cannot listen on"), std::string::npos) << second.err();
}

TEST_F(RemoteDistillTest, PythonGrpcClientGetsLogitsAndCleanErrors) {
  Server server = StartTeacher("server_py");
  ASSERT_GT(server.port, 0);
  // Inputs and the expected logits, from this process's own model copy.
  auto config = ParseViTConfigYaml(kTeacherModel);
  VisionTransformer teacher(*config);
  ASSERT_TRUE(LoadViTWeightsFile(*teacher, Tmp("teacher.safetensors")).ok());
  teacher->eval();
  torch::manual_seed(3);
  torch::Tensor images = torch::randn({3, 1, 28, 28});
  torch::Tensor idx = torch::rand({3, 16}).argsort(1, false).narrow(1, 0, 8).contiguous();
  torch::Tensor patches = CutPatches(images, idx, 7);
  torch::NoGradGuard no_grad;
  torch::Tensor logits = teacher->ForwardKept(images, idx).logits;
  for (auto [name, t] : {std::pair{"patches", patches}, std::pair{"idx", idx.to(torch::kInt32)},
                         std::pair{"logits", logits}}) {
    auto host = FromTensor(t);
    ASSERT_TRUE(host.ok());
    ASSERT_TRUE(WriteNpy(Tmp(std::string(name) + ".npy"), *host).ok());
  }
  fs::create_directories(Tmp("pygen"));
  std::string cmd =
      "protoc --proto_path=proto --python_out=" + Tmp("pygen") +
      " proto/maskedkd/v1/teacher.proto && /usr/bin/python3 tests/teacher_client.py " +
      std::to_string(server.port) + " " + Tmp("pygen") + " " + Tmp("") + " > " + Tmp("py.txt") +
      " 2>&1";
  int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << testing::SlurpFile(Tmp("py.txt"));
  EXPECT_NE(testing::SlurpFile(Tmp("py.txt")).find("python client: ok"), std::string::npos);
}

}  // namespace
}  // namespace mkd
