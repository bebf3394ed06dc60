// libFuzzer target: the safetensors reader (common/safetensors.h), which
// reads checkpoints and teacher weights from disk.
//
// Beyond "no crash": whatever the parser accepts must serialise and parse
// back to the same tensors (the writer and reader agree on every file the
// reader lets through).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "common/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<mkd::SafetensorsFile> file = mkd::ParseSafetensors(bytes);
  if (!file.ok()) {
    // Every refusal is the documented code, never an internal error.
    if (file.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  absl::StatusOr<std::string> again = mkd::SerializeSafetensors(*file);
  if (!again.ok()) std::abort();
  absl::StatusOr<mkd::SafetensorsFile> back = mkd::ParseSafetensors(*again);
  if (!back.ok() || back->metadata != file->metadata ||
      back->tensors.size() != file->tensors.size()) {
    std::abort();
  }
  for (const auto& [name, t] : file->tensors) {
    const auto it = back->tensors.find(name);
    if (it == back->tensors.end() || it->second.dtype != t.dtype || it->second.shape != t.shape ||
        it->second.data != t.data) {
      std::abort();
    }
  }
  return 0;
}
