#include "teacher_client/shm_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/device.h"
#include "proto/shared_memory.h"

namespace mkd::client {

absl::StatusOr<std::unique_ptr<ShmRegion>> ShmRegion::Create(int64_t bytes, int cuda_device) {
  if (bytes <= 0) return absl::InvalidArgumentError("a shared-memory region needs bytes > 0");
  std::random_device rd;
  const std::string name = absl::StrFormat("%s%d-%08x%08x", kShmRegionPrefix, getpid(), rd(), rd());
  // Owner-only, and never an object that already exists.
  const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("shm_open of a shared-memory region: ", std::strerror(errno)));
  }
  // fchmod as well: the umask may have narrowed the mode, never widened
  // it, but the teacher checks for exactly owner-only.
  fchmod(fd, 0600);
  const int err = posix_fallocate(fd, 0, bytes);
  if (err != 0) {
    close(fd);
    shm_unlink(name.c_str());
    const std::string why = absl::StrCat("allocating a shared-memory region of ", bytes >> 20,
                                         " MiB in /dev/shm: ", std::strerror(err));
    return err == ENOSPC ? absl::ResourceExhaustedError(
                               why + " (a larger /dev/shm, or a smaller distill.shm_region_mb)")
                         : absl::InternalError(why);
  }
  void* data = mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);  // The mapping keeps the object.
  if (data == MAP_FAILED) {
    shm_unlink(name.c_str());
    return absl::InternalError(
        absl::StrCat("mmap of a shared-memory region: ", std::strerror(errno)));
  }
  const bool locked =
      cuda_device >= 0 && RegisterHostMemory(torch::Device(torch::kCUDA, cuda_device), data, bytes);
  return std::unique_ptr<ShmRegion>(
      new ShmRegion(name, static_cast<char*>(data), bytes, locked ? cuda_device : -1));
}

ShmRegion::~ShmRegion() {
  Unlink();
  if (cuda_device_ >= 0) UnregisterHostMemory(torch::Device(torch::kCUDA, cuda_device_), data_);
  munmap(data_, static_cast<size_t>(size_));
}

void ShmRegion::Unlink() {
  if (unlinked_) return;
  unlinked_ = true;
  shm_unlink(name_.c_str());  // ENOENT once the teacher unlinked it: fine.
}

RangeAllocator::RangeAllocator(int64_t size, int64_t alignment) : alignment_(alignment) {
  const int64_t usable = size / alignment_ * alignment_;
  if (usable > 0) free_[0] = usable;
  free_bytes_ = usable;
}

std::optional<int64_t> RangeAllocator::Allocate(int64_t bytes) {
  if (bytes <= 0) return std::nullopt;
  const int64_t need = (bytes + alignment_ - 1) / alignment_ * alignment_;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < need) continue;
    const int64_t offset = it->first;
    const int64_t left = it->second - need;
    free_.erase(it);
    if (left > 0) free_[offset + need] = left;
    used_[offset] = need;
    free_bytes_ -= need;
    return offset;
  }
  return std::nullopt;
}

void RangeAllocator::Free(int64_t offset) {
  auto used = used_.find(offset);
  if (used == used_.end()) return;
  int64_t start = offset, length = used->second;
  used_.erase(used);
  free_bytes_ += length;
  // Merge with the free neighbours on either side.
  auto next = free_.lower_bound(start);
  if (next != free_.end() && next->first == start + length) {
    length += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      length += prev->second;
      free_.erase(prev);
    }
  }
  free_[start] = length;
}

}  // namespace mkd::client
