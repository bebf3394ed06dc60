// The pool's retry policy, in one place: which failures a later identical
// call may get past, which ones no retry can mend, and how long to wait
// between tries.
#ifndef MKD_RPC_RETRY_H_
#define MKD_RPC_RETRY_H_

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace mkd::rpc {

// The peer is away, busy or slow (UNAVAILABLE, RESOURCE_EXHAUSTED,
// DEADLINE_EXCEEDED): the same call may succeed later or elsewhere.
bool IsTransient(absl::StatusCode code);

// The call itself or its credentials are wrong (INVALID_ARGUMENT,
// UNAUTHENTICATED, PERMISSION_DENIED): a retry would send the same thing
// and be refused the same way, so the caller stops and reports it.
bool IsRefusal(absl::StatusCode code);

// Exponential backoff: `initial`, doubled after each try, capped at `max`.
// Thread-compatible.
class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max);
  // The wait before the next try; the one after is twice as long.
  absl::Duration Next();
  // Back to `initial` (after a success, or a connection that lived).
  void Reset();

 private:
  const absl::Duration initial_, max_;
  absl::Duration next_;
};

}  // namespace mkd::rpc

#endif  // MKD_RPC_RETRY_H_
