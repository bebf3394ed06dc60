// Idempotency for micro-batch ids: a repeated (job, micro_batch_id) is
// answered, never computed twice. While the first copy is in flight, later
// copies wait for its answer; once it succeeded, the answer is kept for the
// job's last `window` ids. Failed answers are not kept, so a retry after
// RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED is computed afresh.
// Thread-safe; waiters are called without the lock held.
#ifndef MKD_TEACHER_SERVER_RESULT_CACHE_H_
#define MKD_TEACHER_SERVER_RESULT_CACHE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "maskedkd/v1/teacher.pb.h"

namespace mkd::teacher {

using Answer = std::shared_ptr<const maskedkd::v1::DistillResponse>;
using AnswerFn = std::function<void(Answer)>;

class ResultCache {
 public:
  explicit ResultCache(int64_t window) : window_(window) {}

  enum class Lookup {
    kNew,      // First sight: the caller computes, then calls Complete.
    kWaiting,  // In flight: `waiter` gets the answer from Complete.
    kDone,     // Answered before: *cached holds it; `waiter` is not kept.
  };
  Lookup Begin(const std::string& job, uint64_t id, AnswerFn waiter, Answer* cached);

  // Hands `answer` to every waiter of (job, id), in arrival order.
  void Complete(const std::string& job, uint64_t id, Answer answer);

 private:
  struct Entry {
    bool done = false;
    Answer answer;
    std::vector<AnswerFn> waiters;
  };
  struct JobState {
    std::map<uint64_t, Entry> entries;
    std::deque<uint64_t> done_order;  // Oldest first, for eviction.
  };

  const int64_t window_;
  std::mutex mu_;
  std::map<std::string, JobState> jobs_;  // Guarded by mu_.
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_RESULT_CACHE_H_
