// How a micro-batch's bytes reach a teacher and its logits come back, per
// Distill stream (proto/shared_memory.h has the protocol):
//   grpc  in the gRPC message itself (a teacher on another host);
//   shm   through a ShmRegion the stream shares with a teacher on this host
//         (the message names ranges of it).
// Either way the control plane (ids, codes, deadlines, retries, failover)
// is the same gRPC stream.
#ifndef MKD_TEACHER_CLIENT_DATA_PLANE_H_
#define MKD_TEACHER_CLIENT_DATA_PLANE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/data_plane_kind.h"
#include "common/mutex.h"
#include "maskedkd/v1/teacher.pb.h"
#include "teacher_client/shm_region.h"

namespace mkd::client {

// One micro-batch, ready for any teacher on any plane; shared, immutable,
// by the sends (retries, failovers) of its id.
struct OutgoingMicroBatch {
  // Every field but kept_indices and the payload.
  maskedkd::v1::DistillRequest header;
  int64_t payload_bytes = 0;  // [b, k, C*p*p] in the wire dtype.
  int64_t indices_bytes = 0;  // [b, k] int32.
  int64_t logits_bytes = 0;   // f32 [b, classes].
  // The bytes, in host memory once wait_ready returned (a copy from the
  // device may still be running when the batch is made; empty: there
  // already). wait_ready is thread-safe; the bytes live as long as this.
  std::function<void()> wait_ready;
  const char* payload = nullptr;
  const char* indices = nullptr;
  // For a student on a GPU: copies the payload straight from the device
  // into page-locked `dst` and waits; false when it cannot (use payload).
  // Thread-safe. Empty on the CPU.
  std::function<bool(void* dst)> copy_payload_into;
  std::shared_ptr<void> keepalive;  // Owns the bytes.

  // The size of the request as a gRPC message carrying the payload.
  int64_t MessageBytes() const;
};
using SharedMicroBatch = std::shared_ptr<const OutgoingMicroBatch>;

// Thread-safe: a stream's writer encodes while its reader decodes.
class DataPlane {
 public:
  virtual ~DataPlane() = default;
  virtual DataPlaneKind kind() const = 0;
  // The request that carries `mb` on this plane.
  virtual maskedkd::v1::DistillRequest Encode(const OutgoingMicroBatch& mb) = 0;
  // Completes answer `r` with what travelled outside the message (the
  // logits of a shm answer) and releases what its request held.
  virtual void Decode(maskedkd::v1::DistillResponse* r) = 0;
  // Micro-batches sent as bytes because the region was full (shm only).
  virtual int64_t fallbacks() const { return 0; }
};

std::unique_ptr<DataPlane> MakeGrpcPlane();
// `region`: the stream's, already accepted by the teacher.
std::unique_ptr<DataPlane> MakeShmPlane(std::unique_ptr<ShmRegion> region);

}  // namespace mkd::client

#endif  // MKD_TEACHER_CLIENT_DATA_PLANE_H_
