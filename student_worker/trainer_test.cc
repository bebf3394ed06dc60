// Trainer on the real Fashion-MNIST (Debian's package), with tiny models so
// each run takes a second or two on CPU.
#include "student_worker/trainer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/vit_weights.h"
#include "student_worker/checkpoint.h"

namespace mkd::student {
namespace {

namespace fs = std::filesystem;

std::string NewDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/trainer_" + name;
  fs::remove_all(dir);
  return dir;
}

TrainConfig Tiny(const std::string& out_dir) {
  auto c = ParseTrainConfig(R"(
mode: train
seed: 5
model: {img_size: 28, patch_size: 7, in_chans: 1, embed_dim: 32, depth: 1, num_heads: 2,
        num_classes: 10, drop_path_rate: 0.1, mean: [0.286], std: [0.353]}
data: {batch_size: 32, workers: 2, limit_train: 256, limit_eval: 200, hflip: true, pad_crop: 2,
       mixup_alpha: 0.5, label_smoothing: 0.1}
optim: {epochs: 2, lr: 1.0e-1, warmup_epochs: 0.5}
run: {log_every_steps: 1, threads: 1}
)",
                            {"run.out_dir=" + out_dir});
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// A real in-process teacher that records what it was asked.
class RecordingTeacher final : public client::Teacher {
 public:
  explicit RecordingTeacher(std::unique_ptr<client::Teacher> inner) : inner_(std::move(inner)) {}
  const ViTConfig& config() const override { return inner_->config(); }
  absl::StatusOr<torch::Tensor> Logits(const torch::Tensor& images,
                                       const torch::Tensor& idx) override {
    kept.push_back(idx.size(1));
    max_index = std::max(max_index, idx.max().item<int64_t>());
    return inner_->Logits(images, idx);
  }
  absl::StatusOr<torch::Tensor> Saliency(const torch::Tensor& images) override {
    return inner_->Saliency(images);
  }
  std::vector<int64_t> kept;
  int64_t max_index = -1;

 private:
  std::unique_ptr<client::Teacher> inner_;
};

// A distill run of `c` whose in-process teacher is wrapped in a recorder.
struct Recorded {
  std::unique_ptr<Trainer> trainer;
  RecordingTeacher* rec = nullptr;  // Owned by trainer.
};

void TrainRecorded(const TrainConfig& c, Recorded* out) {
  auto inner = client::MakeInProcessTeacher(c.distill.teacher_model, c.distill.teacher_weights);
  ASSERT_TRUE(inner.ok()) << inner.status();
  auto recording = std::make_unique<RecordingTeacher>(std::move(*inner));
  out->rec = recording.get();
  auto trainer = Trainer::Create(c, std::move(recording));
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  out->trainer = std::move(*trainer);
  ASSERT_TRUE(out->trainer->Train(false).ok());
}

std::string SaveTeacher(const TrainConfig& student, const std::string& dir) {
  fs::create_directories(dir);
  ViTConfig t = student.model;
  t.embed_dim = 24;
  t.depth = 2;
  t.num_heads = 3;
  torch::manual_seed(99);
  VisionTransformer teacher(t);
  std::string path = dir + "/teacher.safetensors";
  EXPECT_TRUE(SaveViTWeights(*teacher, path).ok());
  std::ofstream(dir + "/teacher.yaml")
      << "img_size: 28\npatch_size: 7\nin_chans: 1\nembed_dim: 24\ndepth: 2\nnum_heads: 3\n"
         "num_classes: 10\nmean: [0.286]\nstd: [0.353]\n";
  return path;
}

std::vector<nlohmann::json> Metrics(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(TrainerTest, LossDecreasesAndAccuracyBeatsChance) {
  std::string dir = NewDir("plain");
  TrainConfig c = Tiny(dir);
  c.optim.epochs = 4;
  c.optim.lr = 0.05;
  c.data.limit_train = 1024;
  c.data.batch_size = 64;
  c.data.mix.mixup_alpha = 0;
  c.model.drop_path_rate = 0;
  auto trainer = Trainer::Create(c);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ASSERT_TRUE((*trainer)->Train(false).ok());
  EXPECT_EQ((*trainer)->step(), 64);
  // Mean train loss of the first and the last epoch (16 steps each).
  double first = 0, last = 0, top1 = 0;
  for (auto& m : Metrics(dir)) {
    if (m["type"] == "eval") top1 = m["top1"];
    if (m["type"] != "train") continue;
    if (m["epoch"] == 1) first += m["loss"].get<double>() / 16;
    if (m["epoch"] == 4) last += m["loss"].get<double>() / 16;
  }
  EXPECT_LT(last, first - 0.15);  // Label smoothing 0.1 keeps the floor high.
  EXPECT_GT(top1, 0.3) << "10 classes: chance is 0.1";
}

TEST(TrainerTest, DistillGivesTheTeacherExactlyKTokens) {
  std::string dir = NewDir("distill");
  TrainConfig c = Tiny(dir);
  c.mode = "distill";
  c.optim.epochs = 1;
  c.distill.teacher_model = dir + "/teacher.yaml";
  c.distill.teacher_weights = SaveTeacher(c, dir);
  c.distill.keep_ratio = 0.5;
  Recorded run;
  ASSERT_NO_FATAL_FAILURE(TrainRecorded(c, &run));
  RecordingTeacher* rec = run.rec;
  ASSERT_EQ(rec->kept.size(), 8u);  // 256 / 32 steps.
  for (int64_t k : rec->kept) EXPECT_EQ(k, 8) << "round(0.5 * 16)";
  EXPECT_LT(rec->max_index, 16);
  // Teacher FLOPs: half the tokens cost about half.
  double ratio = run.trainer->teacher_flops_spent() / run.trainer->teacher_flops_full();
  EXPECT_GT(ratio, 0.4);
  EXPECT_LT(ratio, 0.6);
  auto metrics = Metrics(dir);
  EXPECT_GT(metrics.front()["kd"].get<double>(), 0.0);
}

TEST(TrainerTest, MicroBatchesSplitTheStepAndTrainLikeOneBatch) {
  std::string dir = NewDir("micro");
  TrainConfig c = Tiny(dir);
  c.mode = "distill";
  c.optim.epochs = 1;
  c.model.drop_path_rate = 0;  // Draws would differ between split and whole batches.
  c.distill.teacher_model = dir + "/teacher.yaml";
  c.distill.teacher_weights = SaveTeacher(c, dir);
  c.run.log_every_steps = 1;
  std::vector<std::vector<nlohmann::json>> runs;
  for (int m : {1, 4}) {
    c.distill.micro_batches = m;
    c.run.out_dir = dir + "/m" + std::to_string(m);
    Recorded run;
    ASSERT_NO_FATAL_FAILURE(TrainRecorded(c, &run));
    RecordingTeacher* rec = run.rec;
    EXPECT_EQ(rec->kept.size(), 8u * m);  // One teacher call per micro-batch.
    runs.push_back({});
    for (auto& j : Metrics(c.run.out_dir)) {
      if (j["type"] == "train") runs.back().push_back(j);
    }
  }
  // Row-weighted micro-batch losses sum to the whole batch's: same losses
  // up to float summation order (Adam then amplifies sign flips of tiny
  // gradient entries, so weights are not compared element-wise).
  ASSERT_EQ(runs[0].size(), 8u);
  ASSERT_EQ(runs[1].size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    for (const char* key : {"loss", "ce", "kd"}) {
      const double a = runs[0][i][key], b = runs[1][i][key];
      EXPECT_NEAR(a, b, 1e-4 * std::max(1.0, std::abs(a))) << key << " at step " << i + 1;
    }
  }
}

double MaxWeightDiff(Trainer& x, Trainer& y) {
  auto px = x.model()->named_parameters();
  double max_diff = 0;
  for (const auto& p : y.model()->named_parameters()) {
    max_diff = std::max(max_diff, (p.value() - px[p.key()]).abs().max().item<double>());
  }
  return max_diff;
}

TEST(TrainerTest, ResumeReachesTheSameWeights) {
  // Each variant draws random numbers per step somewhere; a resumed run
  // must draw the same.
  for (std::string variant :
       {"train", "train_token_drop", "distill_random", "distill_topk_mixed"}) {
    std::string dir_a = NewDir("a_" + variant), dir_b = NewDir("b_" + variant);
    TrainConfig a = Tiny(dir_a);
    if (variant == "train_token_drop") a.data.token_keep_min = 0.5;
    if (variant.rfind("distill", 0) == 0) {
      a.mode = "distill";
      a.distill.teacher_model = dir_a + "_t/teacher.yaml";
      a.distill.teacher_weights = SaveTeacher(a, dir_a + "_t");
      if (variant == "distill_random") {
        a.distill.criterion = MaskCriterion::kRandom;  // Exercises the per-step selection RNG.
      } else {
        a.distill.random_share = 0.25;
      }
    }
    TrainConfig b = a;
    b.run.out_dir = dir_b;
    auto full = Trainer::Create(a);
    ASSERT_TRUE(full.ok()) << full.status();
    ASSERT_TRUE((*full)->Train(false).ok());

    b.run.max_steps = 5;  // Stop mid-epoch 1.
    auto first = Trainer::Create(b);
    ASSERT_TRUE(first.ok());
    ASSERT_TRUE((*first)->Train(false).ok());
    EXPECT_EQ((*first)->step(), 5);
    b.run.max_steps = 0;
    auto second = Trainer::Create(b);
    ASSERT_TRUE(second.ok());
    ASSERT_TRUE((*second)->Train(/*resume=*/true).ok());
    EXPECT_EQ((*second)->step(), (*full)->step());
    EXPECT_LE(MaxWeightDiff(**full, **second), 1e-6) << variant;
    EXPECT_DOUBLE_EQ((*second)->teacher_flops_spent(), (*full)->teacher_flops_spent());
  }
}

TEST(TrainerTest, TokenDropShowsTheModelPartOfEachImage) {
  std::string dir_full = NewDir("drop_full"), dir_drop = NewDir("drop_half");
  TrainConfig full = Tiny(dir_full);
  full.optim.epochs = 1;
  TrainConfig drop = full;
  drop.run.out_dir = dir_drop;
  drop.data.token_keep_min = 0.25;
  auto a = Trainer::Create(full);
  auto b = Trainer::Create(drop);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->Train(false).ok());
  ASSERT_TRUE((*b)->Train(false).ok());
  // Same seed, data and initial weights: only the dropped patches differ.
  EXPECT_GT(MaxWeightDiff(**a, **b), 1e-4);
}

TEST(TrainerTest, ResumesWithASeedAboveTwoToThe53) {
  // A double cannot hold 2^53 + 1: the seed must round-trip exactly.
  std::string dir = NewDir("bigseed");
  TrainConfig c = Tiny(dir);
  c.seed = (uint64_t{1} << 53) + 1;
  c.run.max_steps = 3;
  auto first = Trainer::Create(c);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*first)->Train(false).ok());
  c.run.max_steps = 5;
  auto second = Trainer::Create(c);
  ASSERT_TRUE(second.ok());
  absl::Status st = (*second)->Train(/*resume=*/true);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ((*second)->step(), 5);
  c.seed = uint64_t{1} << 53;  // One less: a different seed, refused.
  auto third = Trainer::Create(c);
  ASSERT_TRUE(third.ok());
  st = (*third)->Train(/*resume=*/true);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.message()).find("written with seed 9007199254740993"), std::string::npos)
      << st;
}

TEST(TrainerTest, ResumeSkipsATruncatedLatestCheckpointForTheOneBefore) {
  std::string dir = NewDir("truncated");
  TrainConfig c = Tiny(dir);
  c.run.checkpoint_every_steps = 2;
  c.run.keep_checkpoints = 2;
  c.run.max_steps = 4;  // Checkpoints at steps 2 and 4.
  auto first = Trainer::Create(c);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*first)->Train(false).ok());
  ASSERT_EQ(CheckpointSteps(dir), (std::vector<int64_t>{4, 2}));
  // The newest state file cut short, as by a full disk or a crash.
  const std::string state = CheckpointFor(dir, 4).state;
  std::filesystem::resize_file(state, std::filesystem::file_size(state) / 2);
  c.run.max_steps = 6;
  auto second = Trainer::Create(c);
  ASSERT_TRUE(second.ok());
  absl::Status st = (*second)->Train(/*resume=*/true);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ((*second)->step(), 6) << "resumed from step 2, trained to 6";
  // Steps 3 and 4 were logged by the first run and done again by the
  // second: each is logged once, by the run whose weights went on.
  std::map<int64_t, int> logged;
  for (const auto& j : Metrics(dir)) {
    if (j["type"] == "train") ++logged[j["step"].get<int64_t>()];
  }
  EXPECT_EQ(logged, (std::map<int64_t, int>{{1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}}));
  // Both unreadable: a clear error naming each, no silent fresh start.
  for (int64_t s : {int64_t{6}, int64_t{4}}) {
    const std::string p = CheckpointFor(dir, s).state;
    if (std::filesystem::exists(p)) std::filesystem::resize_file(p, 10);
  }
  auto third = Trainer::Create(c);
  ASSERT_TRUE(third.ok());
  st = (*third)->Train(/*resume=*/true);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(std::string(st.message()).find("no readable checkpoint"), std::string::npos) << st;
  EXPECT_NE(std::string(st.message()).find("step 6"), std::string::npos) << st;
}

TEST(TrainerTest, Bfloat16AutocastTrains) {
  std::string dir = NewDir("bf16");
  TrainConfig c = Tiny(dir);
  c.optim.epochs = 1;
  c.run.precision = DType::kBF16;
  auto trainer = Trainer::Create(c);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ASSERT_TRUE((*trainer)->Train(false).ok());
  EXPECT_EQ((*trainer)->step(), 8);
  for (const auto& p : (*trainer)->model()->parameters()) {
    EXPECT_EQ(p.scalar_type(), torch::kFloat32) << "weights stay fp32";
  }
  auto metrics = Metrics(dir);
  EXPECT_TRUE(std::isfinite(metrics.back()["loss"].get<double>()));
}

TEST(TrainerTest, ConfigMismatchesAreClearErrors) {
  std::string dir = NewDir("bad");
  TrainConfig c = Tiny(dir);
  c.model.num_classes = 7;
  auto t = Trainer::Create(c);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(std::string(t.status().message()).find("num_classes is 7"), std::string::npos);
  c = Tiny(dir);
  c.data.batch_size = 1000;
  t = Trainer::Create(c);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(std::string(t.status().message()).find("data.batch_size"), std::string::npos);
  c = Tiny(dir);
  c.mode = "distill";
  c.distill.teacher_model = "deit_tiny_patch16_224";
  c.distill.teacher_weights = "/no/such/teacher.safetensors";
  t = Trainer::Create(c);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(std::string(t.status().message()).find("/no/such/teacher.safetensors"),
            std::string::npos);
}

}  // namespace
}  // namespace mkd::student
