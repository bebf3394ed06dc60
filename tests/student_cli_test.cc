// Drives the real `mkd-student` binary: a short training run on Debian's
// Fashion-MNIST whose checkpoint then loads in `mkd predict`, eval-only,
// and one-line errors for bad flags, config keys and files.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/npy.h"
#include "common/tensor_util.h"

namespace mkd {
namespace {

namespace fs = std::filesystem;

struct Result {
  int exit_code;
  std::string out;
  std::string err;
};

std::string Tmp(const std::string& name) { return ::testing::TempDir() + "/scli_" + name; }

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result RunBin(const std::string& bin, const std::string& args) {
  const char* dir = std::getenv("MKD_BIN_DIR");
  std::string cmd = std::string(dir ? dir : "build/bin") + "/" + bin + " " + args + " >" +
                    Tmp("out.txt") + " 2>" + Tmp("err.txt");
  int raw = std::system(cmd.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, Slurp(Tmp("out.txt")), Slurp(Tmp("err.txt"))};
}

std::string WriteConfig() {
  std::ofstream(Tmp("model.yaml"))
      << "img_size: 28\npatch_size: 7\nin_chans: 1\nembed_dim: 16\n"
         "depth: 1\nnum_heads: 2\nnum_classes: 10\nmean: [0.286]\nstd: [0.353]\n";
  std::ofstream(Tmp("train.yaml"))
      << "mode: train\nmodel: " << Tmp("model.yaml") << "\n"
      << "data: {batch_size: 32, limit_train: 128, limit_eval: 64}\n"
      << "optim: {epochs: 1, lr: 0.05}\n"
      << "run: {out_dir: " << Tmp("run") << ", log_every_steps: 2, threads: 1}\n";
  return Tmp("train.yaml");
}

TEST(StudentCliTest, TrainsSavesAndTheCheckpointLoadsInPredict) {
  fs::remove_all(Tmp("run"));
  std::string config = WriteConfig();
  Result r = RunBin("mkd-student", "train --config " + config);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("epoch 1/1 step 2/4 loss"), std::string::npos) << r.err;  // The log.
  EXPECT_NE(r.out.find("summary: mode train, 4 steps, top1 "), std::string::npos) << r.out;
  std::string weights = Tmp("run") + "/checkpoints/step_00000004.model.safetensors";
  ASSERT_TRUE(fs::exists(weights));

  Result e = RunBin("mkd-student", "eval --config " + config + " --checkpoint " + weights);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_NE(e.out.find("on 64 images"), std::string::npos) << e.out;

  HostArray images;
  images.shape = {2, 1, 28, 28};
  images.data.assign(2 * 28 * 28 * 4, '\0');
  ASSERT_TRUE(WriteNpy(Tmp("x.npy"), images).ok());
  Result p = RunBin("mkd", "predict --model " + Tmp("model.yaml") + " --weights " + weights +
                               " --images " + Tmp("x.npy") + " --out " + Tmp("y.npy"));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  auto logits = ReadNpy(Tmp("y.npy"));
  ASSERT_TRUE(logits.ok());
  EXPECT_EQ(logits->shape, (std::vector<int64_t>{2, 10}));

  // The plot script turns the run's metrics.jsonl into a PNG.
  fs::remove(Tmp("curves.png"));
  std::string plot = "/usr/bin/python3 scripts/plot_metrics.py " + Tmp("run") + "/metrics.jsonl " +
                     Tmp("curves.png") + " >" + Tmp("plot.txt") + " 2>&1";
  ASSERT_EQ(std::system(plot.c_str()), 0) << Slurp(Tmp("plot.txt"));
  EXPECT_EQ(Slurp(Tmp("curves.png")).substr(0, 8), "\x89PNG\r\n\x1a\n");
  std::ofstream(Tmp("bad.jsonl")) << "{\"type\": \"train\"\n";
  plot = "/usr/bin/python3 scripts/plot_metrics.py " + Tmp("bad.jsonl") + " >" + Tmp("plot.txt") +
         " 2>&1";
  EXPECT_NE(std::system(plot.c_str()), 0);
  EXPECT_NE(Slurp(Tmp("plot.txt")).find("bad.jsonl:1: not JSON"), std::string::npos)
      << Slurp(Tmp("plot.txt"));
}

TEST(StudentCliTest, BadInputGivesOneLineErrors) {
  std::string config = WriteConfig();
  struct Case {
    std::string args, fragment;
  } cases[] = {
      {"train", "missing required flag --config"},
      {"train --config /no/such.yaml", "/no/such.yaml"},
      {"train --config " + config + " --set optim.lrr=1", "config key 'optim.lrr': unknown key"},
      {"train --config " + config + " --set data.batch_size=big",
       "'data.batch_size': expected an integer"},
      {"train --config " + config + " --set data.kind=cifar10 --set data.dir=/no/cifar",
       "/no/cifar/data_batch_1.bin"},
      {"train --config " + config + " --bogus", "unknown flag --bogus"},
      {"eval --config " + config, "missing required flag --checkpoint"},
      {"eval --config " + config + " --checkpoint /no/w.safetensors", "/no/w.safetensors"},
  };
  for (const Case& c : cases) {
    Result r = RunBin("mkd-student", c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.err.find(c.fragment), std::string::npos) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  }
  EXPECT_EQ(RunBin("mkd-student", "").exit_code, 2);
  EXPECT_EQ(RunBin("mkd-student", "fly").exit_code, 2);
}

}  // namespace
}  // namespace mkd
