#include "common/device_timer.h"

#ifdef MKD_TORCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#if __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define MKD_HAVE_NVTX 1
#endif
#endif

namespace mkd {

#ifdef MKD_TORCH_CUDA
struct DeviceTimer::CudaEvents {
  // Created lazily by record(), on the current device, with timing on.
  std::vector<at::cuda::CUDAEvent> pool;
  size_t used = 0;
};
#else
struct DeviceTimer::CudaEvents {};
#endif

DeviceTimer::DeviceTimer(const torch::Device& device) : cuda_(device.is_cuda()) {
  if (cuda_) events_ = std::make_unique<CudaEvents>();
}

DeviceTimer::~DeviceTimer() = default;

int DeviceTimer::Mark() {
#ifdef MKD_TORCH_CUDA
  if (cuda_) {
    CudaEvents& e = *events_;
    if (e.used == e.pool.size()) e.pool.emplace_back(cudaEventDefault);
    e.pool[e.used].record();  // On the current stream.
    return static_cast<int>(e.used++);
  }
#endif
  times_.push_back(std::chrono::steady_clock::now());
  return static_cast<int>(times_.size()) - 1;
}

double DeviceTimer::Seconds(int from, int to) {
#ifdef MKD_TORCH_CUDA
  if (cuda_) {
    CudaEvents& e = *events_;
    e.pool[to].synchronize();
    return e.pool[from].elapsed_time(e.pool[to]) / 1000.0;
  }
#endif
  return std::chrono::duration<double>(times_[to] - times_[from]).count();
}

void DeviceTimer::Reset() {
  times_.clear();
#ifdef MKD_TORCH_CUDA
  if (events_) events_->used = 0;
#endif
}

#ifdef MKD_HAVE_NVTX
ProfileRange::ProfileRange(const char* name) { nvtxRangePushA(name); }
ProfileRange::~ProfileRange() { nvtxRangePop(); }
#else
ProfileRange::ProfileRange(const char*) {}
ProfileRange::~ProfileRange() = default;
#endif

}  // namespace mkd
