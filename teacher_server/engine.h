// The teacher model as the server runs it: a ViT in eval mode on one device
// and compute dtype, taking batches of kept patches (every payload kind is
// cut to kept patches before it is batched) and returning fp32 CPU logits.
//
// A forward pass has three phases so that the batcher can overlap them on a
// GPU: Upload (each micro-batch's patches, decoded into pinned host memory
// (HostEmpty), start their copy to the device on a side stream; no host
// concatenation), Launch (the pieces are joined on the device and the
// forward is queued; returns before it finishes) and Collect (waits, and
// brings the logits back as fp32 on the host). While batch i computes,
// batch i+1 is uploaded. On the CPU, Launch computes and the other phases
// are cheap (one piece is used as it is; several are concatenated once).
//
// Thread-compatible: the Batcher's one thread makes the calls (a benchmark
// may call Run from another thread when the batcher is idle).
#ifndef MKD_TEACHER_SERVER_ENGINE_H_
#define MKD_TEACHER_SERVER_ENGINE_H_

#include <torch/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/host_to_device.h"
#include "common/vit_config.h"
#include "teacher_server/server_config.h"

namespace mkd::teacher {

struct EngineOutput {
  torch::Tensor logits;    // [B, classes]; float32 on the CPU after Collect.
  torch::Tensor features;  // [B, D]; only when asked.
};

// A batch on its way to the device: the micro-batches' patches, then
// their indices, in transfer.
struct EngineInput {
  HostToDevice::Transfer transfer;
  int pieces = 0;  // Micro-batches.
};

class Engine {
 public:
  // Builds config.model, loads config.weights and moves it to config.device
  // in config.dtype. kNotFound/kInvalidArgument for bad weights,
  // kFailedPrecondition when CUDA is asked for but absent.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const TeacherServerConfig& config);
  virtual ~Engine() = default;

  virtual const ViTConfig& config() const = 0;
  virtual const std::string& model_id() const = 0;
  virtual std::string device() const = 0;

  // An uninitialised host tensor for decoding a request into: pinned on
  // CUDA, so Upload copies it to the device without staging it again.
  virtual torch::Tensor HostEmpty(at::IntArrayRef sizes, torch::Dtype dtype) const = 0;

  // Phase 1. `patches`: micro-batches [b_i, k, C*p*p] of one k, in any
  // float dtype on the CPU (normalised as the model expects); `idx`:
  // [b_i, k] int64 into the patch grid. Concatenated in that order.
  virtual absl::StatusOr<EngineInput> Upload(const std::vector<torch::Tensor>& patches,
                                             const std::vector<torch::Tensor>& idx) = 0;
  // Phase 2: queues the forward pass; outputs stay on the device.
  virtual absl::StatusOr<EngineOutput> Launch(EngineInput input, bool features) = 0;
  // Phase 3: waits for a launched output and returns it as fp32 on the CPU.
  virtual absl::StatusOr<EngineOutput> Collect(EngineOutput launched) = 0;

  // Peak device memory held since start-up (nullopt on the CPU).
  virtual std::optional<int64_t> PeakMemoryBytes() const = 0;

  // The three phases in a row, for callers without a pipeline.
  // kResourceExhausted on out-of-memory, kInternal on other LibTorch errors.
  absl::StatusOr<EngineOutput> Run(const torch::Tensor& patches, const torch::Tensor& idx,
                                   bool features);
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_ENGINE_H_
