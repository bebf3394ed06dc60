// The teacher model as the server runs it: a ViT in eval mode on one device
// and compute dtype, taking batches of kept patches (every payload kind is
// cut to kept patches before it is batched) and returning fp32 CPU logits.
// Thread-compatible: the Batcher's one thread calls Run.
#ifndef MKD_TEACHER_SERVER_ENGINE_H_
#define MKD_TEACHER_SERVER_ENGINE_H_

#include <memory>
#include <string>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "common/vit_config.h"
#include "teacher_server/server_config.h"

namespace mkd::teacher {

struct EngineOutput {
  torch::Tensor logits;    // [B, classes] float32, CPU.
  torch::Tensor features;  // [B, D] float32, CPU; only when asked.
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

  // patches [B, k, C*p*p] float32 CPU (normalised as the model expects),
  // idx [B, k] int64 into the patch grid -> logits (and CLS features).
  // kResourceExhausted on out-of-memory, kInternal on other LibTorch errors.
  virtual absl::StatusOr<EngineOutput> Run(const torch::Tensor& patches, const torch::Tensor& idx,
                                           bool features) = 0;
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_ENGINE_H_
