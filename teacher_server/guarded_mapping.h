// A shared mapping of a file another process can shrink under us (a
// student's shared-memory region): touching a page past the file's new end
// raises SIGBUS, which would kill the whole teacher for one student's
// mistake. A process-wide SIGBUS handler knows every guarded mapping; a
// fault inside one replaces that mapping with zero pages (the faulting
// access completes and reads zeros) and marks it broken, so the caller
// refuses what it read. A fault anywhere else gets the previous handler,
// or the default action. This is how Wayland compositors read clients'
// shared-memory buffers.
//
// Callers still check the file's size before an access (SharedRegion does):
// the guard covers only a shrink that races with the access.
//
// Thread-safe. At most kMaxGuardedMappings exist at once.
#ifndef MKD_TEACHER_SERVER_GUARDED_MAPPING_H_
#define MKD_TEACHER_SERVER_GUARDED_MAPPING_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace mkd::teacher {

inline constexpr int kMaxGuardedMappings = 4096;

class GuardedMapping {
 public:
  // Maps `bytes` of `fd` shared, read-write. kResourceExhausted when mmap
  // fails or every guard slot is taken.
  static absl::StatusOr<std::unique_ptr<GuardedMapping>> Map(int fd, int64_t bytes);
  ~GuardedMapping();  // Unmaps and frees the slot.
  GuardedMapping(const GuardedMapping&) = delete;
  GuardedMapping& operator=(const GuardedMapping&) = delete;

  char* data() const { return data_; }
  int64_t size() const { return size_; }
  // True once an access faulted because the file shrank: from then on the
  // mapping holds zeros, not the file.
  bool broken() const;

 private:
  GuardedMapping(char* data, int64_t size, int slot) : data_(data), size_(size), slot_(slot) {}
  char* const data_;
  const int64_t size_;
  const int slot_;
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_GUARDED_MAPPING_H_
