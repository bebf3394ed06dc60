// Whole-file reads and crash-safe writes.
#ifndef MKD_COMMON_FILE_UTIL_H_
#define MKD_COMMON_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mkd {

// Reads all of `path`. kNotFound if it does not exist, kInvalidArgument if
// it is larger than `max_bytes`, kInternal on other I/O errors; every
// message names the path.
absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = size_t{1} << 36);

// Writes `contents` to `path` atomically: a temp file in the same folder is
// written, fsync'ed and renamed over `path`, then the folder is fsync'ed. On
// failure `path` is left as it was and the temp file is removed.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view contents);

// The model id a teacher serving the weights file `path` (whose contents
// are `bytes`) reports: "<file stem>@<FNV-1a of the bytes, 16 hex digits>",
// so it changes when the weights do, whatever the file is called. A job in
// a pool derives the id it asks for the same way from its teacher_weights.
std::string ModelIdOfWeights(const std::string& path, absl::string_view bytes);

}  // namespace mkd

#endif  // MKD_COMMON_FILE_UTIL_H_
