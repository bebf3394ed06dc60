// Peak device memory from LibTorch's CUDA caching allocator. The only file
// of common/ that includes CUDA-specific headers; it compiles them only when
// CMake found a CUDA LibTorch (MKD_TORCH_CUDA), since Debian's CPU-only
// LibTorch ships those headers without the library behind them.
#include "common/device.h"

#ifdef MKD_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace mkd {

std::optional<int64_t> PeakDeviceMemory(const torch::Device& device) {
#ifdef MKD_TORCH_CUDA
  if (device.is_cuda()) {
    // Index 0 of each stat array is the aggregate over pool kinds (what
    // torch.cuda.max_memory_allocated reports).
    auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return static_cast<int64_t>(stats.allocated_bytes[0].peak);
  }
#endif
  (void)device;
  return std::nullopt;
}

std::optional<int64_t> CurrentDeviceMemory(const torch::Device& device) {
#ifdef MKD_TORCH_CUDA
  if (device.is_cuda()) {
    auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return static_cast<int64_t>(stats.allocated_bytes[0].current);
  }
#endif
  (void)device;
  return std::nullopt;
}

void ResetPeakDeviceMemory(const torch::Device& device) {
#ifdef MKD_TORCH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
  }
#endif
  (void)device;
}

}  // namespace mkd
