// Times one thread's work in consecutive intervals, and names them for
// profilers.
//
// DeviceTimer: on the CPU a steady clock read at each Mark; on CUDA an
// event recorded on the thread's current stream at each Mark, so an
// interval is the device's time for the work queued between two marks, not
// the time the host took to queue it (kernels run asynchronously).
//
// ProfileRange: an NVTX range (nsys shows it on the timeline) where CUDA
// and the NVTX headers were found at build time; nothing otherwise.
//
// Not thread-safe: one thread marks and reads.
#ifndef MKD_COMMON_DEVICE_TIMER_H_
#define MKD_COMMON_DEVICE_TIMER_H_

#include <torch/types.h>

#include <chrono>
#include <memory>
#include <vector>

namespace mkd {

class DeviceTimer {
 public:
  explicit DeviceTimer(const torch::Device& device);
  ~DeviceTimer();
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;

  // A point in this thread's stream of work; returns its index.
  int Mark();
  // Seconds from mark `from` to mark `to`. On CUDA, waits until the device
  // has passed `to` (call it after the step's own synchronisation, where
  // it costs nothing).
  double Seconds(int from, int to);
  // Forgets every mark (CUDA events are kept for reuse).
  void Reset();

 private:
  struct CudaEvents;  // CUDA builds only.
  const bool cuda_;
  std::vector<std::chrono::steady_clock::time_point> times_;  // CPU.
  std::unique_ptr<CudaEvents> events_;
};

class ProfileRange {
 public:
  // `name` must outlive the range (a string literal).
  explicit ProfileRange(const char* name);
  ~ProfileRange();
  ProfileRange(const ProfileRange&) = delete;
  ProfileRange& operator=(const ProfileRange&) = delete;
};

}  // namespace mkd

#endif  // MKD_COMMON_DEVICE_TIMER_H_
