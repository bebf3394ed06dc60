// The shared-memory data plane's handshake, for a student and a teacher on
// one host (distill.data_plane: shm, or auto when the teacher's host_id is
// the student's). gRPC stays the control plane; only the bytes of a
// micro-batch (kept patches in, logits out) move through the region.
//
//   1. The student creates a region for each Distill stream it opens: a
//      POSIX shared-memory object named kShmRegionPrefix + random, mode
//      0600, allocated in full, and names it in the call's metadata
//      (kShmRegionKey, kShmBytesKey).
//   2. The teacher opens it, checks it (a regular object this user owns,
//      owner-only, the announced size, a valid name), unlinks the name at
//      once, and answers in its initial metadata, kDataPlaneKey: "shm", or
//      "grpc; <why not>" (the stream then carries bytes).
//   3. Requests name ranges of the region (DistillRequest.payload_shm and
//      logits_shm); the teacher checks every range against the region and
//      the request's shapes and the region's current size before it reads
//      the mapped region (a shrink racing with a read is caught by a SIGBUS
//      guard) and writes with pwrite, so a bad or shrunk region is an
//      INVALID_ARGUMENT answer, never a crash.
// The region lives as long as the stream: when it ends, the teacher closes
// it, and with the name already unlinked nothing is left in /dev/shm.
// Torch-free, gRPC-free.
#ifndef MKD_PROTO_SHARED_MEMORY_H_
#define MKD_PROTO_SHARED_MEMORY_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mkd {

inline constexpr char kShmRegionKey[] = "x-mkd-shm-region";
inline constexpr char kShmBytesKey[] = "x-mkd-shm-bytes";
inline constexpr char kDataPlaneKey[] = "x-mkd-data-plane";
inline constexpr char kShmRegionPrefix[] = "/mkd-";

// OK when `name` is one a student makes: kShmRegionPrefix then 1..64 of
// [A-Za-z0-9_-] (no further '/', nothing a path could climb out with).
// The error names the problem without echoing a long name.
absl::Status ValidateShmRegionName(absl::string_view name);

}  // namespace mkd

#endif  // MKD_PROTO_SHARED_MEMORY_H_
