// Idempotency for micro-batch ids: a repeated (job, micro_batch_id) is
// answered, never computed twice. While the first copy is in flight, later
// copies wait for its answer; once it succeeded, the answer is kept for the
// job's last `window` ids. Failed answers are not kept, so a retry after
// RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED is computed afresh. A job with
// nothing in flight and no lookups for `idle` is forgotten, so finished
// jobs do not pile up in a long-running server.
// Thread-safe; waiters are called without the lock held.
#ifndef MKD_TEACHER_SERVER_RESULT_CACHE_H_
#define MKD_TEACHER_SERVER_RESULT_CACHE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "maskedkd/v1/teacher.pb.h"

namespace mkd::teacher {

using Answer = std::shared_ptr<const maskedkd::v1::DistillResponse>;
using AnswerFn = std::function<void(Answer)>;

// A digest of everything that determines a request's answer (shape, dtype,
// payload kind, indices, payload bytes, features flag); not its id, job,
// weight, timeout or data plane. `payload`: the payload's bytes, wherever
// they came from (the message, or shared memory). XXH3: fast (tens of GB/s)
// rather than cryptographic; it tells an honest client's re-send from a
// different request under a reused id.
uint64_t RequestDigest(const maskedkd::v1::DistillRequest& request, absl::string_view payload);

class ResultCache {
 public:
  using Clock = std::function<absl::Time()>;
  ResultCache(int64_t window, absl::Duration idle, Clock clock = absl::Now)
      : window_(window), idle_(idle), clock_(std::move(clock)) {}

  enum class Lookup {
    kNew,       // First sight: the caller computes, then calls Complete.
    kWaiting,   // In flight: `waiter` gets the answer from Complete.
    kDone,      // Answered before: *cached holds it; `waiter` is not kept.
    kMismatch,  // The id was used for a request with another `digest`.
  };
  // `digest` identifies the request's content (RequestDigest): a re-sent id
  // must carry the same request, or its answer would be another's logits.
  Lookup Begin(const std::string& job, uint64_t id, uint64_t digest, AnswerFn waiter,
               Answer* cached);

  // Hands `answer` to every waiter of (job, id), in arrival order.
  void Complete(const std::string& job, uint64_t id, Answer answer);

  // Jobs with state kept (in flight, or seen within `idle`).
  int64_t jobs();

 private:
  struct Entry {
    uint64_t digest = 0;
    bool done = false;
    Answer answer;
    std::vector<AnswerFn> waiters;
  };
  struct JobState {
    std::map<uint64_t, Entry> entries;
    std::deque<uint64_t> done_order;  // Oldest first, for eviction.
    int64_t in_flight = 0;            // Entries not yet done.
    absl::Time last_used;
  };
  // Drops idle jobs other than `keep`.
  void ForgetIdleJobs(absl::Time now, const std::string& keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t window_;
  const absl::Duration idle_;
  const Clock clock_;
  Mutex mu_;
  std::map<std::string, JobState> jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_RESULT_CACHE_H_
