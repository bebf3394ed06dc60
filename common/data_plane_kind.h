// The data plane a job's micro-batches take to a teacher (config key
// distill.data_plane): the name of the concept everywhere. Torch-free.
#ifndef MKD_COMMON_DATA_PLANE_KIND_H_
#define MKD_COMMON_DATA_PLANE_KIND_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mkd {

enum class DataPlaneKind {
  kAuto,  // Shared memory with a teacher on this host, gRPC bytes otherwise.
  kGrpc,  // Bytes in the gRPC message.
  kShm,   // A shared-memory region per stream; only a teacher on this host.
};

// "auto" | "grpc" | "shm"; kInvalidArgument otherwise (kUnimplemented for
// cuda_ipc, not built yet). Messages leave naming the key to the caller.
absl::StatusOr<DataPlaneKind> ParseDataPlaneKind(absl::string_view name);
absl::string_view DataPlaneName(DataPlaneKind kind);

}  // namespace mkd

#endif  // MKD_COMMON_DATA_PLANE_KIND_H_
