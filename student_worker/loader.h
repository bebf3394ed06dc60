// Multi-threaded data loader: worker threads decode and augment whole
// batches into a bounded, in-order prefetch buffer.
//
// Determinism: the epoch's order is a permutation seeded by (seed, epoch);
// each sample's augmentation RNG by (seed, epoch, sample index); mixing by
// (seed, epoch, batch). So batches are identical whatever the number of
// workers, and StartEpoch(epoch, first_batch) resumes mid-epoch exactly.
// Sharding: rank r of w sees positions r, r+w, ... of the permutation. In
// training every rank gets the same number of samples (the remainder is
// dropped); in evaluation every example is seen by exactly one rank.
//
// Thread safety: StartEpoch/Next are called from one thread (the trainer);
// workers are internal.
#ifndef MKD_STUDENT_WORKER_LOADER_H_
#define MKD_STUDENT_WORKER_LOADER_H_

#include <torch/types.h>

#include <atomic>
#include <map>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "common/thread.h"
#include "student_worker/dataset.h"
#include "student_worker/transforms.h"

namespace mkd::student {

struct LoaderOptions {
  int64_t batch_size = 64;
  bool train = true;      // Train transforms, shuffling and mixing; else eval transforms, in order.
  bool drop_last = true;  // Train only: drop a final partial batch.
  int workers = 2;
  int prefetch_batches = 4;
  uint64_t seed = 0;
  int rank = 0;
  int world_size = 1;
  TransformConfig transform;
  MixConfig mix;
};

struct Batch {
  torch::Tensor images;   // [b, C, S, S] float, normalised.
  torch::Tensor labels;   // [b] int64.
  torch::Tensor targets;  // [b, classes] soft targets (train), else undefined.
  int64_t epoch = 0;
  int64_t index = 0;    // Batch number within the epoch.
  int64_t skipped = 0;  // Unreadable examples left out of this batch.
};

class Loader {
 public:
  // `dataset` must outlive the loader. kInvalidArgument on bad options.
  static absl::StatusOr<std::unique_ptr<Loader>> Create(const Dataset* dataset,
                                                        const LoaderOptions& options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t batches_per_epoch() const;
  int64_t samples_per_epoch() const { return static_cast<int64_t>(shard_size_); }

  // Starts (or restarts) the workers on `epoch` from batch `first_batch`.
  void StartEpoch(int64_t epoch, int64_t first_batch = 0);

  // The next batch in order, or nullopt at the end of the epoch. An error
  // if a whole batch was unreadable.
  std::optional<absl::StatusOr<Batch>> Next();

 private:
  Loader(const Dataset* dataset, const LoaderOptions& options);
  void StopWorkers();
  void WorkerLoop();
  absl::StatusOr<Batch> BuildBatch(int64_t index) const;

  // Constant after construction.
  const Dataset* const dataset_;
  const LoaderOptions options_;
  const size_t shard_size_;

  // Set by StartEpoch while no workers run.
  int64_t epoch_ = 0;
  std::vector<size_t> order_;  // This rank's dataset indices for the epoch.
  int64_t end_batch_ = 0;

  Mutex mu_;
  CondVar cv_;
  std::map<int64_t, absl::StatusOr<Batch>> ready_ ABSL_GUARDED_BY(mu_);
  int64_t next_to_build_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_to_return_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // A worker that died of a bug: Next() returns this instead of waiting
  // for a batch that worker held.
  absl::Status worker_died_ ABSL_GUARDED_BY(mu_);

  std::vector<Thread> workers_;
};

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_LOADER_H_
