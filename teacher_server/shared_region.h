// A student's shared-memory region as the teacher server uses it (the
// shared-memory data plane, proto/shared_memory.h): opened by name when the
// student's stream opens, its name unlinked at once, closed when the last
// reference goes (the stream ended and every answer was written).
//
// The region is mapped (GuardedMapping). Before a range is read, the
// object's size is checked (fstat): a student that shrinks its region, or
// names a range outside it, gets an error for its own micro-batch. A shrink
// racing with a read is caught by the mapping's SIGBUS guard: the read then
// fails, as does every later one of that region; the server never crashes
// on it. Logits are written with pwrite (small; a write never faults).
//
// On a CUDA teacher the service page-locks the mapping (set_page_locked),
// so a payload goes to the device by DMA straight from it (View), with no
// copy on the CPU.
//
// Thread-safe (the mapping and the descriptor are shared; page_locked is
// set before the region is shared).
#ifndef MKD_TEACHER_SERVER_SHARED_REGION_H_
#define MKD_TEACHER_SERVER_SHARED_REGION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "maskedkd/v1/teacher.pb.h"
#include "teacher_server/guarded_mapping.h"

namespace mkd::teacher {

class SharedRegion {
 public:
  // Opens region `name` announced at `announced_bytes`, then unlinks the
  // name. kInvalidArgument for a bad name, a size over `max_bytes`, or an
  // object that is not a regular one of this user's, owner-only, of the
  // announced size; kNotFound when there is none (another host, or
  // another /dev/shm). Messages do not echo the name.
  static absl::StatusOr<std::unique_ptr<SharedRegion>> Open(const std::string& name,
                                                            int64_t announced_bytes,
                                                            int64_t max_bytes);
  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  const std::string& name() const { return name_; }
  int64_t size() const { return size_; }

  // OK when `range` names this region and lies inside it with exactly
  // `expected_bytes`; kInvalidArgument naming `field` otherwise.
  absl::Status CheckRange(const maskedkd::v1::SharedMemoryRange& range, int64_t expected_bytes,
                          absl::string_view field) const;
  // Copies `bytes` at `offset` into `dst`, or `src` to `offset`.
  // REQUIRES: CheckRange passed for the range. kInvalidArgument when the
  // region has shrunk under it.
  absl::Status Read(int64_t offset, int64_t bytes, void* dst) const;
  absl::Status Write(int64_t offset, const void* src, int64_t bytes) const;

  // The mapped bytes at `offset`, to read in place; kInvalidArgument when
  // the region no longer holds [offset, offset + bytes). Whoever reads them
  // on the CPU checks Intact() afterwards: a shrink racing with the read
  // turns them to zeros. REQUIRES: CheckRange passed for the range.
  absl::StatusOr<const char*> View(int64_t offset, int64_t bytes) const;
  // OK unless an access to the mapping found the region shrunk.
  absl::Status Intact() const;

  char* mapped() const;  // The whole mapping (size() bytes).
  // Whether the mapping is registered with the device for DMA (set once by
  // the service, before the region is shared).
  bool page_locked() const { return page_locked_; }
  void set_page_locked(bool locked) { page_locked_ = locked; }

 private:
  SharedRegion(std::string name, int fd, int64_t size, std::unique_ptr<GuardedMapping> mapping)
      : name_(std::move(name)), fd_(fd), size_(size), mapping_(std::move(mapping)) {}
  // OK when the object still holds [offset, offset + bytes); `field` names
  // the range in the error.
  absl::Status Holds(int64_t offset, int64_t bytes, absl::string_view field) const;

  const std::string name_;
  const int fd_;
  const int64_t size_;
  const std::unique_ptr<GuardedMapping> mapping_;
  bool page_locked_ = false;
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_SHARED_REGION_H_
