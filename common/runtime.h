// Process-wide tuning of the host runtime for LibTorch on CPU. Every binary
// that runs models calls ConfigureRuntime() once at start-up, before any
// worker threads exist.
#ifndef MKD_COMMON_RUNTIME_H_
#define MKD_COMMON_RUNTIME_H_

namespace mkd {

struct RuntimeReport {
  int intra_op_threads = 0;
  bool openblas_pinned = false;  // OpenBLAS found and set to one thread.
};

// - Intra-op threads: `threads`, or one per core if `threads` <= 0
//   (LibTorch on Debian defaults to one).
// - OpenBLAS, when it is the loaded BLAS, is told to use one thread:
//   LibTorch already parallelises around its BLAS calls, and OpenBLAS's own
//   busy-waiting pool on top of that oversubscribes the cores (measured: a
//   DeiT-Ti forward ran at half speed).
// - glibc malloc keeps freed activation buffers in the heap instead of
//   returning each one to the kernel; otherwise every forward pays page
//   faults for tens of MiB (measured: 2.4x on a DeiT-S batch of 32).
RuntimeReport ConfigureRuntime(int threads);

}  // namespace mkd

#endif  // MKD_COMMON_RUNTIME_H_
