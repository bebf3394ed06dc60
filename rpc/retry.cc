#include "rpc/retry.h"

#include <algorithm>

namespace mkd::rpc {

bool IsTransient(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kResourceExhausted ||
         code == absl::StatusCode::kDeadlineExceeded;
}

bool IsRefusal(absl::StatusCode code) {
  return code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kUnauthenticated ||
         code == absl::StatusCode::kPermissionDenied;
}

Backoff::Backoff(absl::Duration initial, absl::Duration max)
    : initial_(initial), max_(max), next_(initial) {}

absl::Duration Backoff::Next() {
  const absl::Duration now = next_;
  next_ = std::min(next_ * 2, max_);
  return now;
}

void Backoff::Reset() { next_ = initial_; }

}  // namespace mkd::rpc
