#include "teacher_server/shared_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "proto/shared_memory.h"

namespace mkd::teacher {

absl::StatusOr<std::unique_ptr<SharedRegion>> SharedRegion::Open(const std::string& name,
                                                                 int64_t announced_bytes,
                                                                 int64_t max_bytes) {
  if (absl::Status st = ValidateShmRegionName(name); !st.ok()) return st;
  if (announced_bytes <= 0 || announced_bytes > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("shared-memory region of ", announced_bytes,
                                                   " bytes; this teacher takes 1 to ", max_bytes));
  }
  const int fd = shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) {
    const int err = errno;
    return err == ENOENT ? absl::NotFoundError(
                               "no such shared-memory region here (is the teacher on another "
                               "host, or in another /dev/shm?)")
                         : absl::InvalidArgumentError(absl::StrCat(
                               "cannot open the shared-memory region: ", std::strerror(err)));
  }
  // The name has served its purpose: from now on only the two processes
  // hold the region, and no crash of either leaves it in /dev/shm.
  shm_unlink(name.c_str());
  struct stat st;
  absl::Status bad;
  if (fstat(fd, &st) != 0) {
    bad = absl::InvalidArgumentError(
        absl::StrCat("cannot stat the shared-memory region: ", std::strerror(errno)));
  } else if (!S_ISREG(st.st_mode)) {
    bad = absl::InvalidArgumentError("the shared-memory region is not a regular object");
  } else if (st.st_uid != geteuid()) {
    bad = absl::InvalidArgumentError(
        "the shared-memory region belongs to another user; regions are owner-only");
  } else if ((st.st_mode & 077) != 0) {
    bad = absl::InvalidArgumentError(
        "the shared-memory region is open to other users; it must be mode 0600");
  } else if (st.st_size != announced_bytes) {
    bad = absl::InvalidArgumentError(absl::StrCat("the shared-memory region has ", st.st_size,
                                                  " bytes, ", announced_bytes, " announced"));
  }
  absl::StatusOr<std::unique_ptr<GuardedMapping>> mapping =
      bad.ok() ? GuardedMapping::Map(fd, announced_bytes) : bad;
  if (!mapping.ok()) {
    close(fd);
    return mapping.status();
  }
  return std::unique_ptr<SharedRegion>(
      new SharedRegion(name, fd, announced_bytes, *std::move(mapping)));
}

SharedRegion::~SharedRegion() { close(fd_); }

absl::Status SharedRegion::CheckRange(const maskedkd::v1::SharedMemoryRange& range,
                                      int64_t expected_bytes, absl::string_view field) const {
  if (range.region() != name_) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".region: not this stream's shared-memory region"));
  }
  // Unsigned on the wire: compare without overflow.
  const uint64_t size = static_cast<uint64_t>(size_);
  if (range.size() != static_cast<uint64_t>(expected_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".size: ", range.size(),
                                                   " bytes, but the shapes need ", expected_bytes));
  }
  if (range.offset() > size || range.size() > size - range.offset()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": [", range.offset(), ", +",
                                                   range.size(), ") lies outside the region of ",
                                                   size_, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status SharedRegion::Holds(int64_t offset, int64_t bytes, absl::string_view field) const {
  struct stat st;
  if (fstat(fd_, &st) != 0 || st.st_size < offset + bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": the shared-memory region no longer holds the range (did it shrink?)"));
  }
  return Intact();
}

absl::Status SharedRegion::Intact() const {
  if (!mapping_->broken()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      "the shared-memory region shrank while it was read (did it shrink?); this stream's "
      "region is no longer read");
}

char* SharedRegion::mapped() const { return mapping_->data(); }

absl::StatusOr<const char*> SharedRegion::View(int64_t offset, int64_t bytes) const {
  MKD_RETURN_IF_ERROR(Holds(offset, bytes, "payload_shm"));
  return mapping_->data() + offset;
}

absl::Status SharedRegion::Read(int64_t offset, int64_t bytes, void* dst) const {
  MKD_ASSIGN_OR_RETURN(const char* src, View(offset, bytes));
  std::memcpy(dst, src, static_cast<size_t>(bytes));
  return Intact();
}

absl::Status SharedRegion::Write(int64_t offset, const void* src, int64_t bytes) const {
  // pwrite past the end would grow the region: a shrunk one is refused.
  MKD_RETURN_IF_ERROR(Holds(offset, bytes, "logits_shm"));
  const char* p = static_cast<const char*>(src);
  while (bytes > 0) {
    const ssize_t n = pwrite(fd_, p, static_cast<size_t>(bytes), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::InternalError(
          absl::StrCat("writing logits to the shared-memory region: ", std::strerror(errno)));
    }
    p += n;
    offset += n;
    bytes -= n;
  }
  return absl::OkStatus();
}

}  // namespace mkd::teacher
