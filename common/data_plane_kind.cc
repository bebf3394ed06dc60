#include "common/data_plane_kind.h"

#include "absl/strings/str_cat.h"

namespace mkd {

absl::StatusOr<DataPlaneKind> ParseDataPlaneKind(absl::string_view name) {
  if (name == "auto") return DataPlaneKind::kAuto;
  if (name == "grpc") return DataPlaneKind::kGrpc;
  if (name == "shm") return DataPlaneKind::kShm;
  if (name == "cuda_ipc") {
    return absl::UnimplementedError(
        "cuda_ipc is not built yet; shm (host shared memory) is the same-host plane");
  }
  return absl::InvalidArgumentError(absl::StrCat("expected auto, grpc or shm, got '", name, "'"));
}

absl::string_view DataPlaneName(DataPlaneKind kind) {
  switch (kind) {
    case DataPlaneKind::kGrpc:
      return "grpc";
    case DataPlaneKind::kShm:
      return "shm";
    case DataPlaneKind::kAuto:
      break;
  }
  return "auto";
}

}  // namespace mkd
