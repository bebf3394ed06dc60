// Peak device memory from LibTorch's CUDA caching allocator, and host
// memory page-locked for the device's copy engines. The only file
// of common/ that includes CUDA-specific headers; it compiles them only when
// CMake found a CUDA LibTorch (MKD_TORCH_CUDA), since Debian's CPU-only
// LibTorch ships those headers without the library behind them.
#include "common/device.h"

#ifdef MKD_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
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

bool RegisterHostMemory(const torch::Device& device, void* data, int64_t bytes) {
#ifdef MKD_TORCH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDAGuard on(device.index() < 0 ? 0 : device.index());
    if (cudaHostRegister(data, static_cast<size_t>(bytes), cudaHostRegisterDefault) ==
        cudaSuccess) {
      return true;
    }
    (void)cudaGetLastError();  // Clears the error: the memory stays pageable.
    return false;
  }
#endif
  (void)device, (void)data, (void)bytes;
  return false;
}

void UnregisterHostMemory(const torch::Device& device, void* data) {
#ifdef MKD_TORCH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDAGuard on(device.index() < 0 ? 0 : device.index());
    (void)cudaDeviceSynchronize();
    (void)cudaHostUnregister(data);
    (void)cudaGetLastError();
    return;
  }
#endif
  (void)device, (void)data;
}

}  // namespace mkd
