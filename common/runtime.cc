#include "common/runtime.h"

#include <dlfcn.h>
#include <malloc.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <thread>

namespace mkd {

RuntimeReport ConfigureRuntime(int threads) {
  RuntimeReport report;
  // Activations (an MLP hidden of a DeiT-S batch is ~40 MiB) exceed even
  // the largest mmap threshold glibc allows (32 MiB), so mmap is off: big
  // blocks come from the heap (a thread arena that cannot serve one falls
  // back to the main arena), and a high trim threshold keeps the heap's
  // top from being handed back after every step.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);

  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(1);
    report.openblas_pinned = true;
  }
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
  report.intra_op_threads = torch::get_num_threads();
  return report;
}

}  // namespace mkd
