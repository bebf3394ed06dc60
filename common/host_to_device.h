// Host-to-device copies that overlap compute: tensors are staged in pinned
// (page-locked) host memory and copied on a side stream of their own, while
// the kernels already queued on the device's current stream keep running.
// Uses only LibTorch's device-generic stream and event interfaces, so it
// compiles against a CPU-only LibTorch; on a CPU device it hands the
// tensors through unchanged.
//
// Not thread-safe: one owner thread, which is also the thread whose current
// stream consumes the results.
#ifndef MKD_COMMON_HOST_TO_DEVICE_H_
#define MKD_COMMON_HOST_TO_DEVICE_H_

#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <torch/types.h>

#include <memory>
#include <optional>
#include <vector>

namespace mkd {

class HostToDevice {
 public:
  // A copy in flight; Finish() it on the consuming thread.
  struct Transfer {
    std::vector<torch::Tensor> tensors;  // On the device; valid after Finish.
    std::shared_ptr<c10::Event> done;    // Null on CPU.
  };

  explicit HostToDevice(torch::Device device);

  const torch::Device& device() const { return device_; }

  // Starts copying `host` (CPU tensors; already pinned ones are not staged
  // again) to the device and returns at once. The host tensors may be
  // changed or freed on return. Tensors already on the device pass through.
  Transfer Start(const std::vector<torch::Tensor>& host);

  // A pinned host tensor of `sizes` and `dtype` for a caller that wants to
  // assemble its data in place (torch::cat_out) and skip a staging copy; a
  // plain CPU tensor when the device is the CPU.
  torch::Tensor PinnedEmpty(at::IntArrayRef sizes, torch::Dtype dtype) const;

  // Makes the current stream wait for `t`'s copy (no host wait) and returns
  // its device tensors.
  std::vector<torch::Tensor> Finish(Transfer t) const;

 private:
  torch::Device device_;                    // With an index on CUDA. Constant after construction.
  std::optional<c10::Stream> copy_stream_;  // CUDA only.
};

}  // namespace mkd

#endif  // MKD_COMMON_HOST_TO_DEVICE_H_
