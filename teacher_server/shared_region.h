// A student's shared-memory region as the teacher server uses it (the
// shared-memory data plane, proto/shared_memory.h): opened by name when the
// student's stream opens, its name unlinked at once, closed when the last
// reference goes (the stream ended and every answer was written).
//
// The region is never mapped: ranges are read with pread and written with
// pwrite, after CheckRange. A student that shrinks its region, or names a
// range outside it, gets an error for its own micro-batch; the server
// never reads outside the region and cannot take a SIGBUS from it.
//
// Thread-safe (pread/pwrite on a shared descriptor; no state changes
// after Open).
#ifndef MKD_TEACHER_SERVER_SHARED_REGION_H_
#define MKD_TEACHER_SERVER_SHARED_REGION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "maskedkd/v1/teacher.pb.h"

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
  // region has shrunk under it (a short read or write).
  absl::Status Read(int64_t offset, int64_t bytes, void* dst) const;
  absl::Status Write(int64_t offset, const void* src, int64_t bytes) const;

 private:
  SharedRegion(std::string name, int fd, int64_t size)
      : name_(std::move(name)), fd_(fd), size_(size) {}

  const std::string name_;
  const int fd_;
  const int64_t size_;
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_SHARED_REGION_H_
