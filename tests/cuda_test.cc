// CUDA against CPU, for what runs on a GPU: the ViT's logits and saliency,
// distill steps of the trainer, checkpoints moving between devices and an
// exact resume, and mkd-teacher serving real gRPC clients from a GPU.
//
// Every test skips, saying why, where this process has no CUDA device (CI,
// and any machine with Debian's CPU-only LibTorch); scripts/gpu_check.sh
// runs them on a GPU machine. Data is the synthetic dataset: the GPU image
// carries no Debian packages.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "common/device.h"
#include "common/masking.h"
#include "common/thread.h"
#include "common/vit_weights.h"
#include "student_worker/trainer.h"
#include "teacher_client/remote_teacher.h"
#include "teacher_server/server.h"

namespace mkd {
namespace {

namespace fs = std::filesystem;

#define MKD_REQUIRE_CUDA()                                                                    \
  if (!CudaAvailable())                                                                       \
  GTEST_SKIP() << "no CUDA device in this process (CPU-only LibTorch, or no GPU): CUDA test " \
                  "skipped; scripts/gpu_check.sh runs it on a GPU machine"

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kCPU, torch::kFloat32) - b.to(torch::kCPU, torch::kFloat32))
      .abs()
      .max()
      .item<double>();
}

ViTConfig SmallViT() {
  ViTConfig c = *ResolveViTConfig("deit_tiny_patch16_224");
  c.img_size = 32;
  c.patch_size = 4;  // 64 patches.
  c.embed_dim = 64;
  c.depth = 3;
  c.num_heads = 4;
  c.num_classes = 10;
  c.drop_path_rate = 0;
  return c;
}

TEST(CudaModel, LogitsAndSaliencyMatchCpu) {
  MKD_REQUIRE_CUDA();
  const ViTConfig c = SmallViT();
  torch::manual_seed(3);
  VisionTransformer model(c);
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::randn({8, 3, 32, 32});
  at::Generator gen = MakeGenerator(torch::kCPU, 4);
  torch::Tensor idx = SelectPatches(torch::zeros({8, 64}), 32, MaskCriterion::kRandom, gen);
  ForwardOptions all_keys, patch_keys;
  all_keys.saliency = patch_keys.saliency = true;
  patch_keys.saliency_mode = SaliencyMode::kPatchKeys;
  ViTOutput cpu_a = model->Forward(x, all_keys), cpu_p = model->Forward(x, patch_keys);
  torch::Tensor cpu_kept = model->ForwardKept(x, idx).logits;

  model->to(torch::kCUDA);
  torch::Tensor xg = x.cuda(), ig = idx.cuda();
  ViTOutput gpu_a = model->Forward(xg, all_keys), gpu_p = model->Forward(xg, patch_keys);
  EXPECT_LE(MaxDiff(gpu_a.logits, cpu_a.logits), 1e-4);
  EXPECT_LE(MaxDiff(gpu_a.saliency, cpu_a.saliency), 1e-5);
  EXPECT_LE(MaxDiff(gpu_p.saliency, cpu_p.saliency), 1e-5);
  EXPECT_LE(MaxDiff(model->ForwardKept(xg, ig).logits, cpu_kept), 1e-4);
  EXPECT_LE(MaxDiff(model->ForwardKeptPatches(CutPatches(xg, ig, 4), ig).logits, cpu_kept), 1e-4);
  // The student's top-k on the GPU picks the CPU's patches (near-ties may
  // swap a neighbour, hence a fraction rather than equality).
  torch::Tensor top_cpu = SelectPatches(cpu_a.saliency, 32, MaskCriterion::kStudentTopk);
  torch::Tensor top_gpu = SelectPatches(gpu_a.saliency, 32, MaskCriterion::kStudentTopk).cpu();
  EXPECT_GE(top_cpu.eq(top_gpu).to(torch::kFloat32).mean().item<double>(), 0.98);
  // bf16 weights and activations: close to fp32, not equal.
  model->to(torch::kCUDA, torch::kBFloat16);
  torch::Tensor bf16 = model->ForwardKept(xg.to(torch::kBFloat16), ig).logits;
  EXPECT_LE(MaxDiff(bf16, cpu_kept), 0.1 * cpu_kept.abs().max().item<double>() + 0.05);
}

// Tiny distill runs on synthetic 3x32x32 images with an in-process teacher.
class CudaTrainer : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/cuda_trainer";
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ViTConfig t = SmallViT();
    t.depth = 4;
    torch::manual_seed(11);
    VisionTransformer teacher(t);
    ASSERT_TRUE(SaveViTWeights(*teacher, dir_ + "/teacher.safetensors").ok());
    std::ofstream(dir_ + "/teacher.yaml")
        << "preset: deit_tiny_patch16_224\nimg_size: 32\npatch_size: 4\nembed_dim: 64\n"
           "depth: 4\nnum_heads: 4\nnum_classes: 10\n";
  }

  student::TrainConfig Config(const std::string& device, const std::string& criterion,
                              const std::string& run) {
    auto c = student::ParseTrainConfig(
        "mode: distill\nseed: 7\n"
        "model: {preset: deit_tiny_patch16_224, img_size: 32, patch_size: 4, embed_dim: 48,\n"
        "        depth: 2, num_heads: 3, num_classes: 10, drop_path_rate: 0}\n"
        "data: {kind: synthetic, dir: 3x32x32, batch_size: 32, workers: 2, limit_train: 256,\n"
        "       limit_eval: 64}\n"
        "optim: {epochs: 2, lr: 2.0e-2, warmup_epochs: 0}\n"
        "run: {log_every_steps: 100, threads: 2}\n",
        {"run.device=" + device, "distill.criterion=" + criterion,
         "distill.teacher_model=" + dir_ + "/teacher.yaml",
         "distill.teacher_weights=" + dir_ + "/teacher.safetensors",
         "run.out_dir=" + dir_ + "/" + run});
    EXPECT_TRUE(c.ok()) << c.status();
    return *c;
  }

  static student::Batch FixedBatch(int64_t i) {
    torch::manual_seed(100 + i);
    student::Batch b;
    b.images = torch::randn({32, 3, 32, 32});
    b.labels = torch::randint(0, 10, {32}, torch::kInt64);
    b.targets = torch::one_hot(b.labels, 10).to(torch::kFloat32);
    return b;
  }

  // Runs `steps` steps of `c` on fixed batches; returns each step's loss.
  static std::vector<double> Steps(student::Trainer& t, int steps) {
    std::vector<double> losses;
    for (int i = 0; i < steps; ++i) {
      auto r = t.RunStep(FixedBatch(i));
      EXPECT_TRUE(r.ok()) << r.status();
      losses.push_back(r.ok() ? r->loss : NAN);
    }
    return losses;
  }

  static double WeightDiff(student::Trainer& a, student::Trainer& b) {
    double worst = 0;
    auto pa = a.model()->named_parameters(), pb = b.model()->named_parameters();
    for (const auto& item : pa) worst = std::max(worst, MaxDiff(item.value(), pb[item.key()]));
    return worst;
  }

  std::string dir_;
};

TEST_F(CudaTrainer, DistillStepsMatchCpu) {
  MKD_REQUIRE_CUDA();
  // Vanilla KD: no selection, so CPU and GPU see identical teacher inputs.
  for (const std::string criterion : {"all", "student_topk"}) {
    auto cpu = student::Trainer::Create(Config("cpu", criterion, "cpu_" + criterion));
    auto gpu = student::Trainer::Create(Config("cuda", criterion, "gpu_" + criterion));
    ASSERT_TRUE(cpu.ok() && gpu.ok()) << cpu.status() << gpu.status();
    ASSERT_TRUE((*gpu)->device().is_cuda());
    std::vector<double> lc = Steps(**cpu, 4), lg = Steps(**gpu, 4);
    for (size_t i = 0; i < lc.size(); ++i) {
      EXPECT_NEAR(lg[i], lc[i], 1e-4 * std::max(1.0, std::abs(lc[i])))
          << criterion << " step " << i;
    }
    EXPECT_LE(WeightDiff(**cpu, **gpu), criterion == "all" ? 1e-4 : 1e-3) << criterion;
  }
}

// Over-fits one batch under autocast: the loss must fall.
void ExpectTrainsAt(student::TrainConfig c, const std::string& precision) {
  c.run.precision = *ParseFloatTypeName(precision);
  c.optim.lr = 0.2;     // 1.25e-2 at batch 32: a few dozen steps over-fit one batch,
  c.optim.epochs = 20;  // with the cosine schedule still far from its end.
  auto t = student::Trainer::Create(c);
  ASSERT_TRUE(t.ok()) << t.status();
  int applied = 0;
  double first = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    student::Batch b;
    torch::manual_seed(100);
    b.images = torch::randn({32, 3, 32, 32});
    b.labels = torch::randint(0, 10, {32}, torch::kInt64);
    b.targets = torch::one_hot(b.labels, 10).to(torch::kFloat32);
    auto r = (*t)->RunStep(b);
    ASSERT_TRUE(r.ok()) << precision << ": " << r.status();
    applied += !r->skipped;
    if (i == 0) first = r->loss;
    last = r->loss;
  }
  // fp16 may skip its first steps while the loss scale settles.
  EXPECT_GE(applied, 45) << precision;
  EXPECT_LT(last, 0.7 * first) << precision;
  std::printf("%s: loss %.3f -> %.3f, %d of 60 steps applied, loss scale %.0f\n", precision.c_str(),
              first, last, applied, (*t)->loss_scale());
}

TEST_F(CudaTrainer, Bf16Trains) {
  MKD_REQUIRE_CUDA();
  ExpectTrainsAt(Config("cuda", "all", "amp_bf16"), "bf16");
}

TEST_F(CudaTrainer, Fp16TrainsWithLossScaling) {
  MKD_REQUIRE_CUDA();
  ExpectTrainsAt(Config("cuda", "all", "amp_fp16"), "fp16");
}

TEST_F(CudaTrainer, CheckpointsMoveBetweenDevicesAndResume) {
  MKD_REQUIRE_CUDA();
  student::TrainConfig c = Config("cuda", "random", "resume_whole");
  c.run.max_steps = 6;
  c.run.checkpoint_every_steps = 3;
  auto whole = student::Trainer::Create(c);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_TRUE((*whole)->Train(false).ok());

  // Stopped at step 3, resumed to 6: the same weights as the whole run,
  // up to the GPU's non-deterministic kernels (atomics in the backward of
  // gathers and attention).
  student::TrainConfig half = Config("cuda", "random", "resume_half");
  half.run.max_steps = 3;
  half.run.checkpoint_every_steps = 3;
  ASSERT_TRUE((*student::Trainer::Create(half))->Train(false).ok());
  half.run.max_steps = 6;
  auto resumed = student::Trainer::Create(half);
  ASSERT_TRUE(resumed.ok());
  ASSERT_TRUE((*resumed)->Train(true).ok());
  EXPECT_EQ((*resumed)->step(), 6);
  const double diff = WeightDiff(**whole, **resumed);
  std::printf("CUDA resume vs uninterrupted: max |weight diff| %.3g\n", diff);
  EXPECT_LE(diff, 1e-5);

  // The GPU run's checkpoint loads on the CPU and gives the same logits.
  student::TrainConfig on_cpu = Config("cpu", "random", "resume_cpu");
  auto cpu = student::Trainer::Create(on_cpu);
  ASSERT_TRUE(cpu.ok());
  const std::string model = dir_ + "/resume_whole/checkpoints/step_00000006.model.safetensors";
  ASSERT_TRUE((*cpu)->LoadWeights(model).ok()) << model;
  EXPECT_LE(WeightDiff(**whole, **cpu), 1e-7);
  // And a CPU checkpoint resumes on the GPU.
  student::TrainConfig cpu_half = Config("cpu", "all", "cpu_to_gpu");
  cpu_half.run.max_steps = 3;
  ASSERT_TRUE((*student::Trainer::Create(cpu_half))->Train(false).ok());
  cpu_half.run.device = "cuda";
  cpu_half.run.max_steps = 4;
  auto moved = student::Trainer::Create(cpu_half);
  ASSERT_TRUE(moved.ok());
  ASSERT_TRUE((*moved)->Train(true).ok());
  EXPECT_EQ((*moved)->step(), 4);
  auto eval = (*moved)->Evaluate();
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_EQ(eval->images, 64);
}

TEST(CudaTeacherServer, AnswersConcurrentStreams) {
  MKD_REQUIRE_CUDA();
  const std::string dir = ::testing::TempDir() + "/cuda_server";
  fs::create_directories(dir);
  teacher::TeacherServerConfig config;
  config.tls.insecure = true;
  config.auth.insecure = true;
  config.model = SmallViT();
  config.weights = dir + "/teacher.safetensors";
  torch::manual_seed(5);
  VisionTransformer reference(config.model);
  ASSERT_TRUE(SaveViTWeights(*reference, config.weights).ok());
  reference->eval();
  config.device = "cuda";
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "";
  auto server = teacher::TeacherServer::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();

  constexpr int kClients = 4, kMicroBatches = 6;
  std::vector<Thread> clients;
  std::vector<double> worst(kClients, 1e9);
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back("mkd-client", [&, c] {
      client::RemoteTeacherOptions o;
      o.tls.insecure = true;
      o.address = "127.0.0.1:" + std::to_string((*server)->port());
      o.job_id = "job" + std::to_string(c % 2);
      o.wire_dtype = DType::kF32;  // The reference sees exactly the same pixels.
      // Half the students on the GPU: their payloads go from the device
      // straight into the page-locked shared-memory region (same host).
      const bool on_gpu = c % 2 == 1;
      if (on_gpu) o.device = "cuda:0";
      auto teacher = client::MakeRemoteTeacher(o);
      if (!teacher.ok()) return;
      std::vector<torch::Tensor> images, idx;
      std::vector<client::PendingLogits> pending;
      at::Generator gen = MakeGenerator(torch::kCPU, 50 + c);
      for (int i = 0; i < kMicroBatches; ++i) {
        images.push_back(torch::randn({8, 3, 32, 32}, gen));
        idx.push_back(
            SelectPatches(torch::zeros({8, 64}), 16 * (1 + i % 3), MaskCriterion::kRandom, gen));
        pending.push_back(on_gpu ? (*teacher)->SubmitLogits(images.back().to(torch::kCUDA),
                                                            idx.back().to(torch::kCUDA))
                                 : (*teacher)->SubmitLogits(images.back(), idx.back()));
      }
      double w = 0;
      for (int i = 0; i < kMicroBatches; ++i) {
        auto logits = client::AwaitLogits(pending[i], absl::Seconds(60));
        if (!logits.ok()) return;
        torch::NoGradGuard no_grad;
        w = std::max(w, MaxDiff(logits->cpu(), reference->ForwardKept(images[i], idx[i]).logits));
      }
      worst[c] = w;
    });
  }
  for (Thread& t : clients) EXPECT_TRUE(t.Join().ok());
  for (int c = 0; c < kClients; ++c) EXPECT_LE(worst[c], 1e-4) << "client " << c;
  (*server)->Shutdown(absl::ZeroDuration());
}

// The other side: without a GPU, asking for one is a clear error that
// names the key, for the trainer and for the teacher server alike.
TEST_F(CudaTrainer, AskingForCudaWithoutOneIsAClearError) {
  if (CudaAvailable()) GTEST_SKIP() << "this process has a CUDA device";
  auto t = student::Trainer::Create(Config("cuda:0", "all", "no_gpu"));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(t.status().message().find("run.device"), std::string::npos) << t.status();
  teacher::TeacherServerConfig config;
  config.tls.insecure = true;
  config.auth.insecure = true;
  config.model = SmallViT();
  config.weights = dir_ + "/teacher.safetensors";
  config.model.depth = 4;
  config.device = "cuda";
  auto engine = teacher::Engine::Create(config);
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("'device'"), std::string::npos) << engine.status();
}

}  // namespace
}  // namespace mkd
