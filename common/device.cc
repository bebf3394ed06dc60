#include "common/device.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/tensor_util.h"

// LibTorch 2.4 replaced the per-backend autocast setters with ones that take
// the device type, and later releases removed the old ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define MKD_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace mkd {
namespace {

bool AutocastEnabled(c10::DeviceType type) {
#ifdef MKD_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(type);
#else
  return type == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
#endif
}

void SetAutocast(c10::DeviceType type, bool on) {
#ifdef MKD_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(type, on);
#else
  if (type == c10::DeviceType::CPU) {
    at::autocast::set_cpu_enabled(on);
  } else {
    at::autocast::set_enabled(on);
  }
#endif
}

c10::ScalarType AutocastDtype(c10::DeviceType type) {
#ifdef MKD_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(type);
#else
  return type == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype()
                                      : at::autocast::get_autocast_gpu_dtype();
#endif
}

void SetAutocastDtype(c10::DeviceType type, c10::ScalarType dtype) {
#ifdef MKD_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == c10::DeviceType::CPU) {
    at::autocast::set_autocast_cpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_gpu_dtype(dtype);
  }
#endif
}

}  // namespace

bool CudaAvailable() { return torch::cuda::is_available(); }

absl::StatusOr<torch::Device> ResolveDevice(const std::string& name, absl::string_view key) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  int64_t index = 0;
  if (name != "cuda") {
    const std::string prefix = "cuda:";
    if (name.rfind(prefix, 0) != 0 || !absl::SimpleAtoi(name.substr(prefix.size()), &index) ||
        index < 0 || index > 127) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": expected cpu, cuda or cuda:N, got '", name, "'"));
    }
  }
  if (!CudaAvailable()) {
    return absl::FailedPreconditionError(
        absl::StrCat(key, ": '", name,
                     "' asked for, but this process has no CUDA device (a CPU-only LibTorch, "
                     "or no GPU visible)"));
  }
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (index >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat(key, ": '", name, "' asked for, but only ", count, " CUDA device(s) exist"));
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void SynchronizeDevice(const torch::Device& device) {
  if (!device.is_cuda()) return;
  const c10::impl::DeviceGuardImplInterface* impl = c10::impl::getDeviceGuardImpl(device.type());
  impl->synchronizeStream(impl->getStream(device));
}

AutocastGuard::AutocastGuard(const torch::Device& device, DType precision)
    : type_(device.type()), on_(precision != DType::kF32) {
  if (!on_) return;
  was_enabled_ = AutocastEnabled(type_);
  old_dtype_ = AutocastDtype(type_);
  SetAutocastDtype(type_, TorchDtype(precision));
  SetAutocast(type_, true);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!on_) return;
  // As torch.autocast: the cast cache lives until the outermost region ends.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  SetAutocast(type_, was_enabled_);
  SetAutocastDtype(type_, old_dtype_);
}

CastCacheScope::CastCacheScope(DType precision) : on_(precision != DType::kF32) {
  // Autocast clears its cache when the outermost region ends: counting
  // this scope as a region keeps the inner ones from being outermost.
  if (on_) at::autocast::increment_nesting();
}

CastCacheScope::~CastCacheScope() {
  if (on_ && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
}

at::Generator MakeGenerator(const torch::Device& device, uint64_t seed) {
  if (device.is_cpu()) {
    // Made fresh: cloning the default CPU generator leaks the clone in
    // LibTorch 1.13 (LeakSanitizer finds it). Same state as a clone that
    // is then seeded: the engine is seeded and no cached normal carries over.
    return at::detail::createCPUGenerator(seed);
  }
  at::Generator global = at::globalContext().defaultGenerator(device);
  at::Generator gen;
  {
    std::lock_guard<std::mutex> lock(global.mutex());
    gen = global.clone();
  }
  gen.set_current_seed(seed);  // Also resets a CUDA generator's offset.
  return gen;
}

torch::Tensor GetDefaultRngState(const torch::Device& device) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void SetDefaultRngState(const torch::Device& device, const torch::Tensor& state) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

}  // namespace mkd
