#include "common/host_to_device.h"

#include <c10/core/StreamGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

namespace mkd {
namespace {

const c10::impl::DeviceGuardImplInterface* Impl(const torch::Device& d) {
  return c10::impl::getDeviceGuardImpl(d.type());
}

}  // namespace

HostToDevice::HostToDevice(torch::Device device) : device_(device) {
  if (device_.is_cuda()) {
    if (!device_.has_index()) device_ = torch::Device(torch::kCUDA, 0);
    copy_stream_ = Impl(device_)->getStreamFromGlobalPool(device_, /*isHighPriority=*/false);
  }
}

torch::Tensor HostToDevice::PinnedEmpty(at::IntArrayRef sizes, torch::Dtype dtype) const {
  auto options = torch::TensorOptions().dtype(dtype);
  if (device_.is_cuda()) options = options.pinned_memory(true);
  return torch::empty(sizes, options);
}

HostToDevice::Transfer HostToDevice::Start(const std::vector<torch::Tensor>& host) {
  Transfer t;
  if (!device_.is_cuda()) {
    for (const torch::Tensor& h : host) t.tensors.push_back(h.to(device_));
    return t;
  }
  // The device buffers are allocated on the consuming (current) stream, so
  // the caching allocator ties them to it; `ready` marks the point after
  // which that stream no longer uses whatever memory they reuse, and the
  // side stream waits for it before writing.
  const c10::Stream compute = Impl(device_)->getStream(device_);
  std::vector<torch::Tensor> staged;
  for (const torch::Tensor& h : host) {
    if (h.device() == device_) {
      staged.push_back(torch::Tensor());
      t.tensors.push_back(h);
      continue;
    }
    torch::Tensor pinned = h;
    if (!h.is_pinned()) {
      pinned = PinnedEmpty(h.sizes(), h.scalar_type());
      pinned.copy_(h);
    }
    staged.push_back(pinned);
    t.tensors.push_back(torch::empty(h.sizes(), h.options().device(device_)));
  }
  c10::Event ready(device_.type());
  ready.record(compute);
  t.done = std::make_shared<c10::Event>(device_.type());
  {
    c10::StreamGuard on_copy_stream(*copy_stream_);
    ready.block(*copy_stream_);
    for (size_t i = 0; i < staged.size(); ++i) {
      // Pinned blocks freed after this are not reused by LibTorch's host
      // allocator until the copy reading them has finished.
      if (staged[i].defined()) t.tensors[i].copy_(staged[i], /*non_blocking=*/true);
    }
    t.done->record(*copy_stream_);
  }
  return t;
}

std::vector<torch::Tensor> HostToDevice::Finish(Transfer t) const {
  if (t.done) t.done->block(Impl(device_)->getStream(device_));
  return std::move(t.tensors);
}

}  // namespace mkd
