#include "student_worker/loader.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

namespace mkd::student {
namespace {

// In-memory dataset whose pixels encode the example index; examples listed
// in `bad` fail to decode, like a corrupt image file.
class FakeDataset final : public Dataset {
 public:
  FakeDataset(size_t n, std::set<size_t> bad = {}) : n_(n), bad_(std::move(bad)) {}
  size_t size() const override { return n_; }
  int num_classes() const override { return 10; }
  std::string name() const override { return "fake"; }
  absl::StatusOr<Example> Get(size_t i) const override {
    if (bad_.count(i)) return absl::DataLossError("corrupt example");
    Example e;
    e.channels = 1;
    e.height = e.width = 4;
    e.pixels.assign(16, static_cast<uint8_t>(i));
    e.label = static_cast<int64_t>(i % 10);
    return e;
  }

 private:
  size_t n_;
  std::set<size_t> bad_;
};

LoaderOptions Options(int workers) {
  LoaderOptions o;
  o.batch_size = 8;
  o.workers = workers;
  o.seed = 3;
  o.transform.img_size = 4;
  o.transform.channels = 1;
  o.transform.mean = {0.0};
  o.transform.std = {1.0};
  o.transform.hflip = true;
  o.transform.pad_crop = 1;
  o.mix.mixup_alpha = 0.8;
  return o;
}

// Example index of each image: pixel values are index / 255 (before mixing,
// so read from the un-mixed labels instead).
std::vector<int64_t> Epoch(Loader& loader, int64_t epoch, int64_t first = 0,
                           std::vector<torch::Tensor>* images = nullptr) {
  loader.StartEpoch(epoch, first);
  std::vector<int64_t> labels;
  while (auto batch = loader.Next()) {
    EXPECT_TRUE(batch->ok()) << batch->status();
    auto& b = **batch;
    for (int64_t i = 0; i < b.labels.size(0); ++i) labels.push_back(b.labels[i].item<int64_t>());
    if (images) images->push_back(b.images);
    EXPECT_LE((b.targets.sum(1) - 1).abs().max().item<double>(), 1e-5);
  }
  return labels;
}

TEST(LoaderTest, SameBatchesWhateverTheWorkerCount) {
  FakeDataset data(100);
  auto one = Loader::Create(&data, Options(1));
  auto four = Loader::Create(&data, Options(4));
  ASSERT_TRUE(one.ok() && four.ok());
  EXPECT_EQ((*one)->batches_per_epoch(), 12);  // drop_last: 100 / 8.
  std::vector<torch::Tensor> a, b;
  EXPECT_EQ(Epoch(**one, 0, 0, &a), Epoch(**four, 0, 0, &b));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
  EXPECT_NE(Epoch(**one, 0), Epoch(**one, 1)) << "shuffled per epoch";
}

TEST(LoaderTest, ResumesMidEpochExactly) {
  FakeDataset data(100);
  auto loader = Loader::Create(&data, Options(3));
  ASSERT_TRUE(loader.ok());
  std::vector<torch::Tensor> full, tail;
  Epoch(**loader, 2, 0, &full);
  Epoch(**loader, 2, 5, &tail);
  ASSERT_EQ(tail.size(), full.size() - 5);
  for (size_t i = 0; i < tail.size(); ++i) EXPECT_TRUE(torch::equal(tail[i], full[i + 5]));
}

TEST(LoaderTest, ShardsAreDisjointAndCoverTheSplit) {
  // Evaluation: every example is seen by exactly one rank (103 = 35+34+34).
  FakeDataset data(103);
  std::set<int64_t> seen;
  for (int rank = 0; rank < 3; ++rank) {
    LoaderOptions o = Options(2);
    o.train = false;  // Eval: in order, no mixing; pixels tell the index.
    o.rank = rank;
    o.world_size = 3;
    o.batch_size = 10;
    auto loader = Loader::Create(&data, o);
    ASSERT_TRUE(loader.ok());
    EXPECT_EQ((*loader)->samples_per_epoch(), rank == 0 ? 35 : 34);
    (*loader)->StartEpoch(0);
    int64_t count = 0;
    while (auto batch = (*loader)->Next()) {
      ASSERT_TRUE(batch->ok());
      torch::Tensor idx =
          ((**batch).images.select(1, 0).select(1, 0).select(1, 0) * 255).round().to(torch::kInt64);
      for (int64_t i = 0; i < idx.size(0); ++i) {
        EXPECT_TRUE(seen.insert(idx[i].item<int64_t>()).second) << "index seen twice";
        ++count;
      }
    }
    EXPECT_EQ(count, (*loader)->samples_per_epoch());
  }
  EXPECT_EQ(seen.size(), 103u);
  // Training: ranks step in lockstep, so each gets 34 and one is dropped.
  for (int rank = 0; rank < 3; ++rank) {
    LoaderOptions o = Options(2);
    o.rank = rank;
    o.world_size = 3;
    o.batch_size = 10;
    auto loader = Loader::Create(&data, o);
    ASSERT_TRUE(loader.ok());
    EXPECT_EQ((*loader)->samples_per_epoch(), 34);
    EXPECT_EQ((*loader)->batches_per_epoch(), 3);
  }
}

TEST(LoaderTest, BadExamplesAreSkippedAndCounted) {
  FakeDataset data(40, {3, 17});
  LoaderOptions o = Options(2);
  o.train = false;
  o.batch_size = 10;
  auto loader = Loader::Create(&data, o);
  ASSERT_TRUE(loader.ok());
  (*loader)->StartEpoch(0);
  int64_t skipped = 0, images = 0;
  while (auto batch = (*loader)->Next()) {
    ASSERT_TRUE(batch->ok());
    skipped += (**batch).skipped;
    images += (**batch).images.size(0);
  }
  EXPECT_EQ(skipped, 2);
  EXPECT_EQ(images, 38);

  FakeDataset all_bad(4, {0, 1, 2, 3});
  o.batch_size = 4;
  auto bad_loader = Loader::Create(&all_bad, o);
  (*bad_loader)->StartEpoch(0);
  auto batch = (*bad_loader)->Next();
  ASSERT_TRUE(batch.has_value());
  EXPECT_FALSE(batch->ok());
}

// A worker that dies of what no batch can catch (a throw that is no
// std::exception) must not leave the trainer waiting for the batch it held:
// Next() returns the thread's status, naming it, for that batch and after.
class DyingDataset final : public Dataset {
 public:
  size_t size() const override { return 40; }
  int num_classes() const override { return 10; }
  std::string name() const override { return "dying"; }
  absl::StatusOr<Example> Get(size_t i) const override {
    if (i == 25) throw 25;  // NOLINT: the point is a throw no handler expects.
    return FakeDataset(40).Get(i);
  }
};

TEST(LoaderTest, AWorkerThatDiesIsAnErrorNotAHang) {
  DyingDataset data;
  LoaderOptions o = Options(1);
  o.train = false;  // In order: batches 0 and 1 are whole, batch 2 holds example 25.
  o.batch_size = 10;
  auto loader = Loader::Create(&data, o);
  ASSERT_TRUE(loader.ok());
  (*loader)->StartEpoch(0);
  std::vector<absl::Status> got;
  while (auto batch = (*loader)->Next()) got.push_back(batch->status());
  ASSERT_EQ(got.size(), 4u);
  EXPECT_TRUE(got[0].ok()) << got[0];
  EXPECT_TRUE(got[1].ok()) << got[1];
  for (int i = 2; i < 4; ++i) {
    EXPECT_EQ(got[i].code(), absl::StatusCode::kInternal) << got[i];
    EXPECT_NE(got[i].message().find("mkd-loader-0"), std::string::npos) << got[i];
  }
}

TEST(LoaderTest, RejectsBadOptions) {
  FakeDataset data(10);
  LoaderOptions o = Options(1);
  o.rank = 2;
  o.world_size = 2;
  EXPECT_FALSE(Loader::Create(&data, o).ok());
  o = Options(0);
  EXPECT_FALSE(Loader::Create(&data, o).ok());
}

}  // namespace
}  // namespace mkd::student
