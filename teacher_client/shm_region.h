// The student's side of the shared-memory data plane (proto/shared_memory.h):
// one region per Distill stream, and the allocator of its ranges.
#ifndef MKD_TEACHER_CLIENT_SHM_REGION_H_
#define MKD_TEACHER_CLIENT_SHM_REGION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace mkd::client {

// A POSIX shared-memory object of this process: created owner-only (0600)
// under a fresh random name, allocated in full (posix_fallocate, so a
// /dev/shm too small fails here with an error instead of a SIGBUS on a
// later write), and mapped. The name is unlinked by Unlink, by the
// destructor, and by the teacher that opens it; the memory goes when both
// sides have closed it.
// Thread-compatible; the mapped bytes may be written from any thread.
class ShmRegion {
 public:
  // kResourceExhausted when /dev/shm cannot hold `bytes`, kInternal for
  // other failures (the message says which call failed). With
  // `cuda_device` >= 0 (a student on that GPU) the region is also
  // page-locked, so payloads are copied into it from the device by DMA;
  // where the driver refuses, it stays pageable (page_locked() false).
  static absl::StatusOr<std::unique_ptr<ShmRegion>> Create(int64_t bytes, int cuda_device = -1);
  ~ShmRegion();
  ShmRegion(const ShmRegion&) = delete;
  ShmRegion& operator=(const ShmRegion&) = delete;

  const std::string& name() const { return name_; }
  int64_t size() const { return size_; }
  char* data() { return data_; }
  bool page_locked() const { return cuda_device_ >= 0; }
  // Removes the name (the teacher has the region open, or never will).
  void Unlink();

 private:
  ShmRegion(std::string name, char* data, int64_t size, int cuda_device)
      : name_(std::move(name)), data_(data), size_(size), cuda_device_(cuda_device) {}
  const std::string name_;
  char* const data_;
  const int64_t size_;
  const int cuda_device_;  // The GPU it is page-locked for; -1: none.
  bool unlinked_ = false;
};

// First-fit allocation of aligned ranges inside [0, size), with freed
// neighbours merged. Thread-compatible.
class RangeAllocator {
 public:
  explicit RangeAllocator(int64_t size, int64_t alignment = 64);
  // The offset of `bytes` (> 0) free bytes, or nullopt when no free range
  // holds them.
  std::optional<int64_t> Allocate(int64_t bytes);
  // REQUIRES: `offset` came from Allocate and was not freed since.
  void Free(int64_t offset);
  int64_t free_bytes() const { return free_bytes_; }

 private:
  const int64_t alignment_;
  std::map<int64_t, int64_t> free_;  // Offset -> length, disjoint, not adjacent.
  std::map<int64_t, int64_t> used_;  // Offset -> length.
  int64_t free_bytes_ = 0;
};

}  // namespace mkd::client

#endif  // MKD_TEACHER_CLIENT_SHM_REGION_H_
