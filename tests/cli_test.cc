// Drives the real `mkd` binary (predict, mask) as a separate process:
// golden outputs on good input, and a one-line error with a non-zero exit
// and no output file on each kind of bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "common/file_util.h"
#include "common/npy.h"
#include "common/tensor_util.h"

namespace mkd {
namespace {

struct Result {
  int exit_code;
  std::string err;
};

std::string Bin() {
  const char* dir = std::getenv("MKD_BIN_DIR");
  return std::string(dir ? dir : "build/bin") + "/mkd";
}

std::string Tmp(const std::string& name) { return ::testing::TempDir() + "/" + name; }

Result RunMkd(const std::string& args) {
  std::string err_path = Tmp("stderr.txt");
  std::string cmd = Bin() + " " + args + " 2>" + err_path + " >/dev/null";
  int raw = std::system(cmd.c_str());
  std::ifstream in(err_path);
  std::stringstream ss;
  ss << in.rdbuf();
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, ss.str()};
}

torch::Tensor Npy(const std::string& path) {
  auto array = ReadNpy(path);
  EXPECT_TRUE(array.ok()) << array.status();
  return *ToTensor(*array);
}

void SaveNpy(const std::string& path, const torch::Tensor& t) {
  ASSERT_TRUE(WriteNpy(path, *FromTensor(t)).ok());
}

const std::string kGood =
    "predict --model tests/golden/deit.yaml --weights tests/golden/deit.safetensors "
    "--images tests/golden/images.npy ";

TEST(PredictCliTest, FullForwardAndSaliencyMatchGoldens) {
  std::string out = Tmp("logits.npy"), sal = Tmp("sal.npy");
  Result r = RunMkd(kGood + "--threads 1 --batch-size 3 --out " + out + " --saliency-out " + sal);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE((Npy(out) - Npy("tests/golden/deit_logits.npy")).abs().max().item<double>(), 1e-4);
  EXPECT_LE((Npy(sal) - Npy("tests/golden/deit_saliency_all.npy")).abs().max().item<double>(),
            1e-4);
}

TEST(PredictCliTest, KeptTokenForwardMatchesGolden) {
  std::string out = Tmp("kept.npy");
  Result r = RunMkd(kGood + "--keep tests/golden/kept_idx.npy --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  torch::Tensor logits = Npy(out);
  EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
  EXPECT_LE((logits - Npy("tests/golden/deit_kept_logits.npy")).abs().max().item<double>(), 1e-4);
}

struct BadCase {
  std::string args;
  std::string fragment;
};

TEST(PredictCliTest, BadInputGivesOneLineErrorAndNoOutput) {
  SaveNpy(Tmp("idx_range.npy"), torch::tensor({{0, 16}, {1, 2}, {1, 2}, {1, 2}}, torch::kInt64));
  SaveNpy(Tmp("idx_dup.npy"), torch::tensor({{0, 1}, {1, 2}, {3, 3}, {1, 2}}, torch::kInt64));
  SaveNpy(Tmp("idx_rows.npy"), torch::tensor({{0, 1}}, torch::kInt64));
  SaveNpy(Tmp("idx_f32.npy"), torch::zeros({4, 2}));
  SaveNpy(Tmp("small.npy"), torch::zeros({2, 3, 16, 16}));
  ASSERT_TRUE(WriteFileAtomic(Tmp("text.npy"), "just some text\n").ok());
  auto weights = ReadFile("tests/golden/deit.safetensors");
  ASSERT_TRUE(weights.ok());
  ASSERT_TRUE(
      WriteFileAtomic(Tmp("cut.safetensors"), weights->substr(0, weights->size() / 2)).ok());

  const std::string out = Tmp("never.npy");
  const std::string o = " --out " + out;
  const BadCase cases[] = {
      {kGood + "--bogus 1" + o, "unknown flag --bogus"},
      {kGood, "missing required flag --out"},
      {kGood + "--threads many" + o, "--threads expects an integer"},
      {kGood + "--keep tests/golden/kept_idx.npy --saliency-out x.npy" + o, "drop --keep"},
      {"predict --model nope_model --weights w --images i" + o,
       "unknown model preset 'nope_model'"},
      {"predict --model tests/golden/deit.yaml --weights " + Tmp("cut.safetensors") +
           " --images tests/golden/images.npy" + o,
       "truncated"},
      {"predict --model tests/golden/deit.yaml --weights /no/such.safetensors "
       "--images tests/golden/images.npy" +
           o,
       "/no/such.safetensors"},
      {kGood + "--num-classes 7" + o, "head.weight: file [10, 48] vs model [7, 48]"},
      {"predict --model deit_tiny_patch16_224 --weights tests/golden/deit.safetensors "
       "--images tests/golden/images.npy" +
           o,
       "shape mismatches"},
      {"predict --model tests/golden/deit.yaml --weights tests/golden/deit.safetensors --images " +
           Tmp("text.npy") + o,
       "not a .npy file"},
      {"predict --model tests/golden/deit.yaml --weights tests/golden/deit.safetensors --images " +
           Tmp("small.npy") + o,
       "images must have shape [*, 3, 32, 32] but has [2, 3, 16, 16]"},
      {"predict --model tests/golden/deit.yaml --weights tests/golden/deit.safetensors "
       "--images tests/golden/kept_idx.npy" +
           o,
       "dtype must be F32, not I64"},
      {kGood + "--keep " + Tmp("idx_range.npy") + o, "row 0 has index 16 outside [0, 16)"},
      {kGood + "--keep " + Tmp("idx_dup.npy") + o, "row 2 repeats index 3"},
      {kGood + "--keep " + Tmp("idx_rows.npy") + o, "kept indices must have shape [4, *]"},
      {kGood + "--keep " + Tmp("idx_f32.npy") + o, "dtype must be I64, not F32"},
  };
  for (const BadCase& c : cases) {
    std::remove(out.c_str());
    Result r = RunMkd(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.err.find(c.fragment), std::string::npos) << "stderr: " << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    EXPECT_EQ(r.err.rfind("mkd predict: error: ", 0), 0u) << r.err;
    EXPECT_FALSE(ReadFile(out).ok()) << "no output on failure: " << c.args;
  }
}

TEST(MaskCliTest, SelectsTheStudentTopkOnTheTeacherGrid) {
  std::string out = Tmp("idx.npy");
  Result r = RunMkd(
      "mask --saliency tests/golden/deit_saliency_all.npy --teacher "
      "tests/golden/deit3.yaml --keep-ratio 0.5 --out " +
      out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  torch::Tensor idx = Npy(out);
  torch::Tensor sal = Npy("tests/golden/deit_saliency_all.npy");
  torch::Tensor want = std::get<0>(std::get<1>(sal.topk(8, 1)).sort(1));
  EXPECT_TRUE(torch::equal(idx, want));

  // A 14x14 teacher: the 4x4 map is resized, k = round(0.25 * 196) = 49.
  r = RunMkd(
      "mask --saliency tests/golden/deit_saliency_all.npy --teacher "
      "deit_small_patch16_224 --keep-ratio 0.25 --out " +
      out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  idx = Npy(out);
  EXPECT_EQ(idx.sizes(), (torch::IntArrayRef{4, 49}));
  EXPECT_LT(idx.max().item<int64_t>(), 196);
}

TEST(MaskCliTest, BadInputGivesOneLineError) {
  const std::string out = Tmp("never_idx.npy");
  const std::string base = "mask --teacher tests/golden/deit3.yaml --out " + out + " ";
  const BadCase cases[] = {
      {base + "--saliency tests/golden/deit_logits.npy", "N = 10 is not a square patch grid"},
      {base + "--saliency tests/golden/kept_idx.npy", "must be float32 [B, N], got I64"},
      {base + "--saliency tests/golden/deit_saliency_all.npy --keep-ratio 0",
       "keep_ratio must be in (0, 1]"},
      {base + "--saliency tests/golden/deit_saliency_all.npy --keep-ratio half",
       "--keep-ratio expects a number"},
      {base + "--saliency tests/golden/deit_saliency_all.npy --criterion best",
       "unknown mask criterion 'best'"},
      {base + "--saliency tests/golden/deit_saliency_all.npy --criterion teacher_topk",
       "teacher's own saliency"},
  };
  for (const BadCase& c : cases) {
    std::remove(out.c_str());
    Result r = RunMkd(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.err.find(c.fragment), std::string::npos) << "stderr: " << r.err;
    EXPECT_EQ(r.err.rfind("mkd mask: error: ", 0), 0u) << r.err;
    EXPECT_FALSE(ReadFile(out).ok()) << c.args;
  }
}

TEST(PredictCliTest, UsageAndUnknownCommand) {
  EXPECT_EQ(RunMkd("").exit_code, 2);
  Result r = RunMkd("train");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'train'"), std::string::npos);
  EXPECT_EQ(RunMkd("predict --help").exit_code, 0);
}

// The operator's commands must not pay LibTorch's load: `mkd` links none and
// execs mkd-model for the commands that run a ViT.
TEST(CliSplitTest, MkdLinksNoLibTorchAndRunsModelCommandsThroughMkdModel) {
  auto slurp = [](const std::string& path) {
    absl::StatusOr<std::string> text = ReadFile(path);
    return text.ok() ? *text : std::string();
  };
  const std::string dir = Bin().substr(0, Bin().rfind('/'));
  const std::string ldd = Tmp("ldd.txt");
  ASSERT_EQ(std::system(("ldd " + Bin() + " >" + ldd + " 2>&1").c_str()), 0);
  std::string mkd = slurp(ldd);
  EXPECT_EQ(mkd.find("libtorch"), std::string::npos) << mkd;
  EXPECT_EQ(mkd.find("libc10"), std::string::npos) << mkd;
  ASSERT_EQ(std::system(("ldd " + dir + "/mkd-model >" + ldd + " 2>&1").c_str()), 0);
  EXPECT_NE(slurp(ldd).find("libtorch"), std::string::npos);

  // Without mkd-model beside it, `mkd predict` says what is missing.
  const std::string lone = Tmp("lone");
  ASSERT_EQ(std::system(("mkdir -p " + lone + " && cp " + Bin() + " " + lone + "/mkd").c_str()), 0);
  const std::string err = Tmp("lone_err.txt");
  const int raw = std::system((lone + "/mkd predict --help 2>" + err + " >/dev/null").c_str());
  EXPECT_EQ(WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, 1);
  EXPECT_NE(slurp(err).find("needs mkd-model next to mkd"), std::string::npos) << slurp(err);
}

// `mkd token` mints a pool token; its secret may come through a pipe (a
// container's stdin: scripts/pool_secrets.sh), whose size stat cannot tell.
TEST(TokenCliTest, MintsFromASecretPipedIn) {
  const std::string out = Tmp("token.txt");
  const std::string cmd = "head -c 48 /dev/zero | tr '\\0' x | " + Bin() +
                          " token --secret-file /dev/stdin --role job --id job-a --ttl 2h >" + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  absl::StatusOr<std::string> token = ReadFile(out);
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->rfind("mkdt2.job." + std::string("6a6f622d61") + ".", 0), 0u) << *token;
  Result bad = RunMkd("token --secret-file /dev/null --role job --id j");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("holds 0 bytes; a pool secret needs 32 to 4096"), std::string::npos)
      << bad.err;
  EXPECT_EQ(RunMkd("token --secret-file /dev/null --role root --id j").exit_code, 2);
}

}  // namespace
}  // namespace mkd
