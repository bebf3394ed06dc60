#include "common/device_to_host.h"

#ifdef MKD_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace mkd {

#ifdef MKD_TORCH_CUDA
struct DeviceToHost::CudaState {
  c10::cuda::CUDAStream stream;
};

namespace {
// A transfer's device side, for copies straight into other host memory.
struct Sources {
  std::vector<torch::Tensor> tensors;  // Contiguous, on the device.
  c10::cuda::CUDAStream stream;        // The side stream.
  at::cuda::CUDAEvent produced;        // After the kernels producing them.
};
}  // namespace
#else
struct DeviceToHost::CudaState {};
#endif

DeviceToHost::DeviceToHost(torch::Device device) : device_(device) {
#ifdef MKD_TORCH_CUDA
  if (device_.is_cuda()) {
    cuda_.reset(new CudaState{c10::cuda::getStreamFromPool(
        /*isHighPriority=*/false, device_.has_index() ? device_.index() : 0)});
  }
#endif
}

DeviceToHost::~DeviceToHost() = default;

DeviceToHost::Transfer DeviceToHost::Start(const std::vector<torch::Tensor>& tensors) {
  Transfer t;
#ifdef MKD_TORCH_CUDA
  if (cuda_) {
    const c10::cuda::CUDAStream compute =
        c10::cuda::getCurrentCUDAStream(cuda_->stream.device_index());
    // The side stream starts after what the caller has queued so far (the
    // kernels that produce these tensors).
    auto sources = std::make_shared<Sources>(Sources{{}, cuda_->stream, at::cuda::CUDAEvent()});
    sources->produced.record(compute);
    sources->produced.block(cuda_->stream);
    auto done = std::make_shared<at::cuda::CUDAEvent>();
    {
      c10::cuda::CUDAStreamGuard on_side(cuda_->stream);
      for (const torch::Tensor& d : tensors) {
        torch::Tensor src = d.contiguous();
        sources->tensors.push_back(src);
        // The side stream reads memory the compute stream allocated: the
        // caching allocator must not hand it out again before this runs.
        c10::cuda::CUDACachingAllocator::recordStream(src.storage().data_ptr(), cuda_->stream);
        torch::Tensor dst =
            torch::empty(src.sizes(), src.options().device(torch::kCPU).pinned_memory(true));
        dst.copy_(src, /*non_blocking=*/true);
        t.host.push_back(dst);
      }
      done->record(cuda_->stream);
    }
    t.done = done;
    t.sources = sources;
    return t;
  }
#endif
  for (const torch::Tensor& d : tensors) t.host.push_back(d.to(torch::kCPU).contiguous());
  return t;
}

void DeviceToHost::Transfer::Wait() const {
#ifdef MKD_TORCH_CUDA
  if (done) static_cast<at::cuda::CUDAEvent*>(done.get())->synchronize();
#endif
}

bool DeviceToHost::Transfer::CopyInto(size_t i, void* dst) const {
#ifdef MKD_TORCH_CUDA
  if (sources) {
    auto* s = static_cast<Sources*>(sources.get());
    const torch::Tensor& src = s->tensors.at(i);
    c10::cuda::CUDAGuard on(s->stream.device_index());
    s->produced.block(s->stream);
    if (cudaMemcpyAsync(dst, src.data_ptr(), src.nbytes(), cudaMemcpyDeviceToHost, s->stream) !=
        cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    at::cuda::CUDAEvent copied;
    copied.record(s->stream);
    copied.synchronize();
    return true;
  }
#endif
  (void)i, (void)dst;
  return false;
}

}  // namespace mkd
