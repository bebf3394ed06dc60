// Reader and writer for the safetensors format.
//
// Layout: 8-byte little-endian header length N, N bytes of JSON mapping each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end]} plus an
// optional "__metadata__" string map, then the data buffer. Offsets are
// relative to the buffer, must tile it exactly (no holes, no overlap, no
// trailing bytes) and each span must equal dtype size x shape product.
//
// Torch-free: tensors come back as HostArray; common/tensor_util.h converts.
#ifndef MKD_COMMON_SAFETENSORS_H_
#define MKD_COMMON_SAFETENSORS_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"

namespace mkd {

// The upper bound on the JSON header, as in the reference implementation.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  std::map<std::string, HostArray> tensors;
};

// Parses a whole file held in memory. Every structural error is
// kInvalidArgument with a message naming the tensor or field at fault.
absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes);

// ReadFile + ParseSafetensors; messages are prefixed with the path.
absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path);

// Serialises `file`: tensors in name order, header padded with spaces to a
// multiple of 8 bytes so the data buffer is 8-byte aligned. kInvalidArgument
// if a tensor's data size does not match its dtype and shape, or a name is
// empty or "__metadata__".
absl::StatusOr<std::string> SerializeSafetensors(const SafetensorsFile& file);

// SerializeSafetensors + WriteFileAtomic.
absl::Status WriteSafetensors(const std::string& path, const SafetensorsFile& file);

}  // namespace mkd

#endif  // MKD_COMMON_SAFETENSORS_H_
