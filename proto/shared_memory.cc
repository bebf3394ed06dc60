#include "proto/shared_memory.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mkd {

absl::Status ValidateShmRegionName(absl::string_view name) {
  const absl::string_view prefix = kShmRegionPrefix;
  if (!absl::StartsWith(name, prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared-memory region name must start with '", prefix, "'"));
  }
  const absl::string_view rest = name.substr(prefix.size());
  if (rest.empty() || rest.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shared-memory region name must have 1 to 64 characters after '", prefix, "'"));
  }
  for (char c : rest) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          "shared-memory region name may hold only letters, digits, '_' and '-' after the prefix");
    }
  }
  return absl::OkStatus();
}

}  // namespace mkd
