#include "student_worker/loader.h"

#include <torch/types.h>

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/tensor_util.h"

namespace mkd::student {

absl::StatusOr<std::unique_ptr<Loader>> Loader::Create(const Dataset* dataset,
                                                       const LoaderOptions& o) {
  if (o.batch_size < 1) return absl::InvalidArgumentError("loader: batch_size must be positive");
  if (o.workers < 1) return absl::InvalidArgumentError("loader: workers must be >= 1");
  if (o.prefetch_batches < 1)
    return absl::InvalidArgumentError("loader: prefetch_batches must be >= 1");
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("loader: rank ", o.rank, " is not in [0, world_size ", o.world_size, ")"));
  }
  absl::Status st = ValidateTransformConfig(o.transform);
  if (!st.ok()) return st;
  if (dataset->size() < static_cast<size_t>(o.world_size)) {
    return absl::InvalidArgumentError(absl::StrCat("loader: dataset ", dataset->name(), " has ",
                                                   dataset->size(), " examples for ", o.world_size,
                                                   " ranks"));
  }
  return std::unique_ptr<Loader>(new Loader(dataset, o));
}

Loader::Loader(const Dataset* dataset, const LoaderOptions& options)
    : dataset_(dataset),
      options_(options),
      // Training ranks step in lockstep, so each gets the same count (the
      // remainder is dropped); evaluation covers every example once, so
      // the first size % world_size ranks get one more.
      shard_size_(options.train ? dataset->size() / static_cast<size_t>(options.world_size)
                                : (dataset->size() - static_cast<size_t>(options.rank) +
                                   static_cast<size_t>(options.world_size) - 1) /
                                      static_cast<size_t>(options.world_size)) {}

Loader::~Loader() { StopWorkers(); }

int64_t Loader::batches_per_epoch() const {
  const auto n = static_cast<int64_t>(shard_size_);
  const int64_t b = options_.batch_size;
  return options_.train && options_.drop_last ? n / b : (n + b - 1) / b;
}

void Loader::StopWorkers() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  for (Thread& t : workers_) t.Join().IgnoreError();  // Reported to Next() already.
  workers_.clear();
}

void Loader::StartEpoch(int64_t epoch, int64_t first_batch) {
  StopWorkers();
  epoch_ = epoch;
  std::vector<size_t> all(dataset_->size());
  std::iota(all.begin(), all.end(), size_t{0});
  if (options_.train) {
    Rng rng(MixSeed({options_.seed, static_cast<uint64_t>(epoch), 0x5eed}));
    std::shuffle(all.begin(), all.end(), rng);
  }
  order_.clear();
  for (size_t i = static_cast<size_t>(options_.rank); order_.size() < shard_size_;
       i += static_cast<size_t>(options_.world_size)) {
    order_.push_back(all[i]);
  }
  end_batch_ = batches_per_epoch();
  {
    MutexLock lock(&mu_);
    ready_.clear();
    next_to_build_ = next_to_return_ = std::min(first_batch, end_batch_);
    stopping_ = false;
    worker_died_ = absl::OkStatus();
  }
  for (int i = 0; i < options_.workers; ++i) {
    workers_.emplace_back(
        absl::StrCat("mkd-loader-", i), [this] { WorkerLoop(); },
        [this](const absl::Status& s) {
          if (s.ok()) return;
          {
            MutexLock lock(&mu_);
            worker_died_ = s;  // The batch it held will never come.
          }
          cv_.SignalAll();
        });
  }
}

void Loader::WorkerLoop() {
  for (;;) {
    int64_t index;
    {
      MutexLock lock(&mu_);
      // Wait for room in the prefetch window; it bounds memory.
      while (!stopping_ && next_to_build_ < end_batch_ &&
             next_to_build_ >= next_to_return_ + options_.prefetch_batches) {
        cv_.Wait(&mu_);
      }
      if (stopping_ || next_to_build_ >= end_batch_) return;
      index = next_to_build_++;
    }
    absl::StatusOr<Batch> batch = absl::UnknownError("unset");
    // No exception may leave a thread entry point: a transform that throws
    // becomes this batch's error.
    absl::Status thrown =
        CatchTorch(absl::StrCat("loading batch ", index), [&] { batch = BuildBatch(index); });
    if (!thrown.ok()) batch = thrown;
    {
      MutexLock lock(&mu_);
      ready_.emplace(index, std::move(batch));
    }
    cv_.SignalAll();
  }
}

std::optional<absl::StatusOr<Batch>> Loader::Next() {
  ReleasableMutexLock lock(&mu_);
  if (next_to_return_ >= end_batch_) return std::nullopt;
  while (ready_.count(next_to_return_) == 0) {
    if (!worker_died_.ok()) {
      ++next_to_return_;
      return absl::StatusOr<Batch>(worker_died_);
    }
    cv_.Wait(&mu_);
  }
  auto node = ready_.extract(next_to_return_);
  ++next_to_return_;
  lock.Release();
  cv_.SignalAll();
  return std::move(node.mapped());
}

absl::StatusOr<Batch> Loader::BuildBatch(int64_t index) const {
  const auto begin = static_cast<size_t>(index * options_.batch_size);
  const size_t end = std::min(order_.size(), begin + static_cast<size_t>(options_.batch_size));
  std::vector<torch::Tensor> images;
  std::vector<int64_t> labels;
  Batch batch;
  batch.epoch = epoch_;
  batch.index = index;
  absl::Status last_error;
  for (size_t pos = begin; pos < end; ++pos) {
    const size_t i = order_[pos];
    absl::StatusOr<Example> example = dataset_->Get(i);
    if (!example.ok()) {  // One bad image is skipped, not fatal; counted.
      ++batch.skipped;
      last_error = example.status();
      continue;
    }
    Rng rng(MixSeed({options_.seed, static_cast<uint64_t>(epoch_), i}));
    images.push_back(options_.train ? TrainTransform(*example, options_.transform, rng)
                                    : EvalTransform(*example, options_.transform));
    labels.push_back(example->label);
  }
  if (images.empty()) {
    return absl::DataLossError(
        absl::StrCat("batch ", index, " of epoch ", epoch_,
                     " has no readable example; last error: ", last_error.message()));
  }
  batch.images = torch::stack(images);
  batch.labels = torch::tensor(labels, torch::kInt64);
  if (options_.train) {
    Rng rng(MixSeed(
        {options_.seed, static_cast<uint64_t>(epoch_), static_cast<uint64_t>(index), 0x3c}));
    batch.targets =
        MixBatch(batch.images, batch.labels, dataset_->num_classes(), options_.mix, rng);
  }
  return batch;
}

}  // namespace mkd::student
