// Device handling that compiles against a CPU-only LibTorch (Debian's) and a
// CUDA one (PyTorch's bundled LibTorch on a GPU machine) alike: device
// names from config, compute precision and autocast, device synchronisation,
// per-device random generators, peak device memory and page-locking host
// memory for DMA. Only
// device_memory.cc touches CUDA-specific headers, and only when the build
// found a CUDA LibTorch (MKD_TORCH_CUDA); everything else goes through
// LibTorch's device-generic interfaces, so the CPU build checks it.
#ifndef MKD_COMMON_DEVICE_H_
#define MKD_COMMON_DEVICE_H_

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"

namespace mkd {

// "cpu", "cuda" (device 0) or "cuda:N" -> a device this process can use.
// kInvalidArgument for a malformed name, kFailedPrecondition when CUDA is
// asked for but this LibTorch has no CUDA, no GPU is visible, or N is out of
// range. `key` (the config key) prefixes every message.
absl::StatusOr<torch::Device> ResolveDevice(const std::string& name, absl::string_view key);

// True when this process can run CUDA kernels (a CUDA LibTorch and a GPU).
bool CudaAvailable();

// Blocks until every kernel queued on `device` has finished (no-op on CPU).
// Timings of asynchronous CUDA work are only meaningful after this.
void SynchronizeDevice(const torch::Device& device);

// Turns on LibTorch's autocast for `device`'s type at `precision` for its
// lifetime (forward passes and losses; backward runs after it, as in
// PyTorch's recipe). `precision` is a float type (common/dtype.h: kF32,
// kBF16, kF16, as ParseFloatTypeName reads run.precision); kF32 does nothing. On CPU only bf16
// exists; callers validate that. Restores the previous state and clears the cast cache on exit,
// unless a CastCacheScope is open. Not thread-safe across threads (autocast state is thread-local).
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, DType precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  const c10::DeviceType type_;
  const bool on_;
  bool was_enabled_ = false;
  c10::ScalarType old_dtype_ = c10::ScalarType::Float;
};

// Keeps autocast's cast cache (the weights cast to the reduced dtype) alive
// across every AutocastGuard opened inside it, and clears it when it ends.
// A training step opens one around its micro-batches: otherwise each
// micro-batch's forward and loss would cast every weight again (m times a
// step). Open it where the weights do not change (not around the
// optimizer's step). kFp32 does nothing. Thread-local, like autocast.
class CastCacheScope {
 public:
  explicit CastCacheScope(DType precision);
  ~CastCacheScope();
  CastCacheScope(const CastCacheScope&) = delete;
  CastCacheScope& operator=(const CastCacheScope&) = delete;

 private:
  const bool on_;
};

// A fresh random generator on `device` seeded with `seed` (independent of
// the global one, so draws from it do not disturb other random streams).
at::Generator MakeGenerator(const torch::Device& device, uint64_t seed);

// The state of the default generator of `device` (CPU or CUDA), to save in
// checkpoints, and its restoration. REQUIRES: `state` came from the same
// kind of device.
torch::Tensor GetDefaultRngState(const torch::Device& device);
void SetDefaultRngState(const torch::Device& device, const torch::Tensor& state);

// Peak bytes held by LibTorch's caching allocator on `device` since the
// last ResetPeakDeviceMemory, or nullopt on CPU and on a build without CUDA.
std::optional<int64_t> PeakDeviceMemory(const torch::Device& device);
// Bytes held now (same source; nullopt on CPU and without CUDA).
std::optional<int64_t> CurrentDeviceMemory(const torch::Device& device);
void ResetPeakDeviceMemory(const torch::Device& device);

// Page-locks `bytes` at `data` (host memory this process mapped, such as a
// shared-memory region) for `device`'s copy engines, so LibTorch copies
// between it and the device by DMA, asynchronously, without staging it in
// pinned memory first. False on a CPU device, without CUDA, or when the
// driver refuses; the memory then stays pageable and copies from it are
// staged as before.
bool RegisterHostMemory(const torch::Device& device, void* data, int64_t bytes);
// Waits for `device` (a copy may still read the memory), then undoes
// RegisterHostMemory.
void UnregisterHostMemory(const torch::Device& device, void* data);

}  // namespace mkd

#endif  // MKD_COMMON_DEVICE_H_
