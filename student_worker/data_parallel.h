// Data parallelism for one training job across processes: a rendezvous
// through c10d's TCPStore (rank 0 serves it at master_addr:master_port),
// then one of LibTorch's process groups: Gloo on the CPU, NCCL on CUDA
// where the LibTorch found at build time has it (MKD_TORCH_NCCL).
//
// Gradients are averaged the way DistributedDataParallel does it:
// parameters are grouped into buckets of about `bucket_bytes` in reverse
// order (the order backward produces their gradients); during the backward
// that completes a step's gradients, a hook on each parameter copies its
// gradient into its bucket, and a full bucket's all-reduce starts at once,
// overlapping the rest of the backward. Buckets are started strictly in
// index order on every rank, since collectives must be issued in the same
// order everywhere.
//
// Failure: a collective whose peer exited fails as soon as its connection
// closes; one whose peer neither answers nor closes fails after `timeout`.
// Every error is kAborted and says which rank saw it and what to do.
//
// Not thread-safe, except that the hooks may run on autograd's threads.
#ifndef MKD_STUDENT_WORKER_DATA_PARALLEL_H_
#define MKD_STUDENT_WORKER_DATA_PARALLEL_H_

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mkd::student {

struct DataParallelOptions {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string backend = "auto";  // auto | gloo | nccl.
  absl::Duration timeout = absl::Seconds(60);
  int64_t bucket_bytes = int64_t{25} << 20;
  torch::Device device = torch::kCPU;  // Where the gradients live.
};

class DataParallel {
 public:
  // Joins the job: blocks until all world_size ranks have met (or
  // `timeout`). kInvalidArgument for a backend this build lacks;
  // kUnavailable when the rendezvous fails.
  static absl::StatusOr<std::unique_ptr<DataParallel>> Connect(const DataParallelOptions& options);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int rank() const;
  int world_size() const;
  const std::string& backend() const;  // "gloo" or "nccl".

  // Overwrites `tensors` on every rank with rank 0's values.
  absl::Status Broadcast(const std::vector<torch::Tensor>& tensors);

  // Gradient averaging for `params` (leaf tensors that require grad);
  // once, before the first backward. Registers a hook on each.
  void Attach(const std::vector<torch::Tensor>& params);
  // Call right before the backward that completes this step's gradients
  // (the last micro-batch's): its hooks start the all-reduces.
  void ArmHooks();
  // After that backward: all-reduces what the hooks did not start, waits,
  // and leaves every parameter's grad the mean over ranks. Also works
  // without ArmHooks (then nothing overlaps).
  absl::Status AverageGradients();

  // Gradient buckets, and how many of them the last AverageGradients found
  // already started by the hooks (overlapping the backward).
  int buckets() const;
  int buckets_started_in_backward() const;

  // Element-wise sums over ranks (in float64), for step summaries and
  // evaluation counts. `what` names the use in errors.
  absl::StatusOr<std::vector<double>> SumOverRanks(const std::vector<double>& values,
                                                   const std::string& what);
  // Every rank's `values` (all of the same length), indexed by rank.
  absl::StatusOr<std::vector<std::vector<int64_t>>> AllGather(const std::vector<int64_t>& values,
                                                              const std::string& what);

 private:
  struct Impl;
  explicit DataParallel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_DATA_PARALLEL_H_
