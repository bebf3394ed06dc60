#include "student_worker/train_config.h"

#include <gtest/gtest.h>

namespace mkd::student {
namespace {

const char* kBase = R"(
mode: distill
model: deit_tiny_patch16_224
data:
  batch_size: 64
  hflip: true
  mixup_alpha: 0.8
optim:
  lr: 1.0e-3
distill:
  teacher_model: deit_small_patch16_224
  teacher_weights: t.safetensors
  keep_ratio: 0.25
)";

void ExpectError(const std::string& yaml, const std::vector<std::string>& overrides,
                 const std::string& fragment) {
  auto c = ParseTrainConfig(yaml, overrides);
  ASSERT_FALSE(c.ok()) << "expected '" << fragment << "'";
  EXPECT_NE(std::string(c.status().message()).find(fragment), std::string::npos) << c.status();
}

TEST(TrainConfigTest, ParsesSectionsAndFillsTransformFromModel) {
  auto c = ParseTrainConfig(kBase, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->mode, "distill");
  EXPECT_EQ(c->model.embed_dim, 192);
  EXPECT_EQ(c->data.batch_size, 64);
  EXPECT_TRUE(c->data.transform.hflip);
  EXPECT_DOUBLE_EQ(c->data.mix.mixup_alpha, 0.8);
  EXPECT_DOUBLE_EQ(c->distill.keep_ratio, 0.25);
  EXPECT_EQ(c->distill.wire_dtype, DType::kF16);  // The default, parsed into the enum once.
  EXPECT_EQ(c->data.transform.img_size, 224);
  EXPECT_EQ(c->data.transform.mean, c->model.mean);
  EXPECT_DOUBLE_EQ(c->optim.weight_decay, 0.05) << "recipe default";
}

TEST(TrainConfigTest, OverridesIncludingModelKeys) {
  auto c = ParseTrainConfig(
      kBase, {"optim.epochs=3", "distill.criterion=random", "model.num_classes=10",
              "model.img_size=32", "model.patch_size=8", "distill.keep_ratio_end=0.5"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->optim.epochs, 3);
  EXPECT_EQ(c->distill.criterion, MaskCriterion::kRandom);
  EXPECT_EQ(c->model.num_classes, 10);
  EXPECT_EQ(c->model.embed_dim, 192) << "preset kept under the overrides";
  EXPECT_EQ(c->data.transform.img_size, 32);
  EXPECT_DOUBLE_EQ(*c->distill.keep_ratio_end, 0.5);
}

TEST(TrainConfigTest, NamedChoicesAreParsedOnce) {
  auto c = ParseTrainConfig(kBase, {"distill.kind=hard", "distill.saliency=patch_keys",
                                    "distill.criterion=bottomk", "run.precision=bf16"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->distill.kind, KdKind::kHard);
  EXPECT_EQ(c->distill.saliency, SaliencyMode::kPatchKeys);
  EXPECT_EQ(c->distill.criterion, MaskCriterion::kBottomk);
  EXPECT_EQ(c->run.precision, DType::kBF16);
  auto d = ParseTrainConfig(kBase, {});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->distill.kind, KdKind::kSoft) << "defaults";
  EXPECT_EQ(d->distill.saliency, SaliencyMode::kAllKeys);
  EXPECT_EQ(d->distill.criterion, MaskCriterion::kStudentTopk);
  EXPECT_EQ(d->run.precision, DType::kF32);
}

TEST(TrainConfigTest, ErrorsNameTheKey) {
  ExpectError(kBase, {"optim.lrr=1"}, "key 'optim.lrr': unknown key");
  ExpectError(kBase, {"optim.epochs=many"}, "key 'optim.epochs': expected an integer, got 'many'");
  ExpectError(kBase, {"data.hflip=sometimes"}, "key 'data.hflip'");
  ExpectError(kBase, {"distill.keep_ratio=0"}, "key 'distill.keep_ratio': must be in (0, 1]");
  ExpectError(kBase, {"distill.criterion=best"}, "key 'distill.criterion'");
  ExpectError(kBase, {"distill.kind=medium"}, "key 'distill.kind'");
  ExpectError(kBase, {"distill.saliency=both"},
              "key 'distill.saliency': must be all_keys or patch_keys, got 'both'");
  ExpectError(kBase, {"distill.teacher_weights=\"\""},
              "key 'distill.teacher_weights': is required");
  ExpectError(kBase, {"mode=finetune"}, "key 'mode'");
  ExpectError(kBase, {"model=vit_huge"}, "key 'model'");
  ExpectError(kBase, {"model.depth=0"}, "'depth': must be positive");
  ExpectError(kBase, {"noequals"}, "expected key=value");
  ExpectError(kBase, {"data.batch_size=0"}, "key 'data.batch_size'");
  ExpectError(kBase, {"data.label_smoothing=1.5"}, "key 'data.label_smoothing'");
  // Each bound names its own key (these four once named a neighbour's).
  ExpectError(kBase, {"data.limit_eval=-1"}, "key 'data.limit_eval': must be >= 0");
  ExpectError(kBase, {"optim.warmup_lr=-1"}, "key 'optim.warmup_lr': must be >= 0");
  ExpectError(kBase, {"data.cutmix_alpha=-1"}, "key 'data.cutmix_alpha': must be >= 0");
  ExpectError(kBase, {"run.max_steps=-1"}, "key 'run.max_steps': must be >= 0");
  ExpectError(kBase, {"run.precision=fp8"}, "key 'run.precision': must be fp32, bf16 or fp16");
  ExpectError(kBase, {"run.precision=fp16"}, "key 'run.precision': fp16 needs run.device cuda");
  ExpectError(kBase, {"run.device=tpu"},
              "key 'run.device': must be cpu, cuda or cuda:N, got 'tpu'");
  ExpectError(kBase, {"run.fp16_init_scale=0.5"}, "key 'run.fp16_init_scale': must be >= 1");
  ExpectError(kBase, {"distill.teacher_address=localhost"},
              "key 'distill.teacher_address': expected host:port");
  ExpectError(kBase, {"distill.micro_batches=-1"},
              "key 'distill.micro_batches': must be in [0, data.batch_size]");
  ExpectError(kBase, {"distill.micro_batches=65"}, "key 'distill.micro_batches'");
  ExpectError(kBase, {"distill.coordinator=nohost"},
              "key 'distill.coordinator': expected host:port");
  ExpectError(kBase, {"distill.coordinator=127.0.0.1:1", "distill.teacher_address=127.0.0.1:2"},
              "key 'distill.coordinator': set either it or distill.teacher_address");
  ExpectError(kBase, {"distill.coordinator=127.0.0.1:1", "distill.teacher_weights=\"\""},
              "key 'distill.teacher_model_id': is required with a coordinator");
  ExpectError(kBase, {"distill.job_weight=0"}, "key 'distill.job_weight'");
  ExpectError(kBase, {"distill.max_teachers=-2"}, "key 'distill.max_teachers'");
  ExpectError(kBase, {"distill.wire_dtype=int8"},
              "key 'distill.wire_dtype': must be fp32, bf16 or fp16, got 'int8'");
  ExpectError(kBase, {"distill.teacher_timeout_ms=0"}, "key 'distill.teacher_timeout_ms'");
  ExpectError(kBase, {"distill.teacher_address=127.0.0.1:5", "distill.criterion=teacher_topk"},
              "key 'distill.criterion': teacher_topk needs an in-process teacher");
  // A remote teacher or pool needs TLS, or plaintext asked for by name; an
  // in-process teacher (kBase) needs neither.
  ExpectError(kBase, {"distill.teacher_address=127.0.0.1:5"},
              "no TLS configured: set tls.cert, tls.key and tls.ca");
  ExpectError(kBase, {"distill.coordinator=127.0.0.1:5", "tls.ca=/nonexistent.pem"},
              "tls.ca: cannot read '/nonexistent.pem'");
  ExpectError(kBase, {"tls.insecure=maybe"}, "key 'tls.insecure': expected true or false");
  EXPECT_TRUE(
      ParseTrainConfig(kBase, {"distill.teacher_address=127.0.0.1:5", "tls.insecure=true"}).ok());
  ExpectError(kBase, {"data.token_keep_min=0"}, "key 'data.token_keep_min': must be in (0, 1]");
  ExpectError(kBase, {"data.token_keep_min=0.5"},
              "key 'data.token_keep_min': applies to mode train only");
  ExpectError(kBase, {"distill.random_share=1"}, "key 'distill.random_share': must be in [0, 1)");
  ExpectError(kBase, {"distill.random_share=0.1", "distill.criterion=random"},
              "key 'distill.random_share': needs criterion student_topk or teacher_topk");
  ExpectError("mode: train\n", {}, "key 'model': is required");
  ExpectError("[1, 2]", {}, "must be a YAML mapping");
  ExpectError("model: {depth: [}", {}, "not valid YAML");
  // Found by fuzz/config_fuzz: a list used as a key made yaml-cpp throw
  // out of the parser and end the process.
  ExpectError("? [a, b]\n: 1\n", {}, "a key that is not a plain name");
  ExpectError("optim:\n  ? {x: 1}\n  : 2\n", {}, "under 'optim'");
}

}  // namespace
}  // namespace mkd::student
