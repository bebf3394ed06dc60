// libFuzzer target: the .npy reader (common/npy.h), which reads the
// datasets users point the trainer at.
//
// Beyond "no crash": an accepted array serialises and parses back equal
// (BF16 excepted: NumPy has no such dtype, so the writer refuses it).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "common/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<mkd::HostArray> array = mkd::ParseNpy(bytes);
  if (!array.ok()) {
    if (array.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  absl::StatusOr<std::string> again = mkd::SerializeNpy(*array);
  if (!again.ok()) {
    if (array->dtype == mkd::DType::kBF16) return 0;
    std::abort();
  }
  absl::StatusOr<mkd::HostArray> back = mkd::ParseNpy(*again);
  if (!back.ok() || back->dtype != array->dtype || back->shape != array->shape ||
      back->data != array->data) {
    std::abort();
  }
  return 0;
}
