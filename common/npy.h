// Reader and writer for NumPy's .npy format (versions 1.0, 2.0 and 3.0).
//
// Only little-endian (or byte-order-free) dtypes in C order are accepted;
// anything else is a clear kInvalidArgument rather than a silent transpose
// or byte swap. Torch-free.
#ifndef MKD_COMMON_NPY_H_
#define MKD_COMMON_NPY_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"

namespace mkd {

// Parses a whole .npy file held in memory.
absl::StatusOr<HostArray> ParseNpy(absl::string_view bytes);

// ReadFile + ParseNpy; messages are prefixed with the path.
absl::StatusOr<HostArray> ReadNpy(const std::string& path);

// Serialises as version 1.0 (2.0 if the header needs it). kInvalidArgument
// if the data size does not match dtype and shape, or for BF16, which
// NumPy cannot represent.
absl::StatusOr<std::string> SerializeNpy(const HostArray& array);

// SerializeNpy + WriteFileAtomic.
absl::Status WriteNpy(const std::string& path, const HostArray& array);

}  // namespace mkd

#endif  // MKD_COMMON_NPY_H_
