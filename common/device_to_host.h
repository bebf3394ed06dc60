// Device-to-host copies that do not stop the calling thread: on CUDA the
// tensors are copied on a side stream, after the work already queued on
// the caller's current stream, into pinned host memory (LibTorch's caching
// host allocator reuses those blocks), and any thread can wait for the
// copy's event later; on the CPU the tensors are made contiguous at once.
// The mirror of HostToDevice.
//
// Not thread-safe: one owner thread starts transfers; Transfer::Wait may
// be called from any thread.
#ifndef MKD_COMMON_DEVICE_TO_HOST_H_
#define MKD_COMMON_DEVICE_TO_HOST_H_

#include <torch/types.h>

#include <memory>
#include <optional>
#include <vector>

namespace mkd {

class DeviceToHost {
 public:
  // A copy in flight. `host` holds the (contiguous, CPU) results, valid
  // once Wait returned.
  struct Transfer {
    std::vector<torch::Tensor> host;
    std::shared_ptr<void> done;  // CUDA: the copy's event; null on the CPU.
    // CUDA: the device tensors and the side stream, for CopyInto (the
    // device memory is held as long as the transfer is); null on the CPU.
    std::shared_ptr<void> sources;
    // Blocks until the copy has landed. Thread-safe; cheap when done.
    void Wait() const;
    // Copies tensor `i` again, from the device straight into `dst`:
    // page-locked host memory (RegisterHostMemory) of host[i].nbytes(),
    // such as a shared-memory region; waits for it. Thread-safe. False on
    // the CPU or when the copy fails (host[i] is then the one to use).
    bool CopyInto(size_t i, void* dst) const;
  };

  explicit DeviceToHost(torch::Device device);
  ~DeviceToHost();

  // Starts copying `tensors` (on the device; CPU tensors are made
  // contiguous) to host memory and returns at once. The device tensors
  // may be freed on return: the transfer holds them as long as it lives.
  Transfer Start(const std::vector<torch::Tensor>& tensors);

 private:
  struct CudaState;  // CUDA builds only: the side stream.
  const torch::Device device_;
  std::unique_ptr<CudaState> cuda_;
};

}  // namespace mkd

#endif  // MKD_COMMON_DEVICE_TO_HOST_H_
