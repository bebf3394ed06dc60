// The dynamic batcher's scheduling policy, free of threads, clocks and
// tensors so that tests drive it with made-up times.
//
// Work is bucketed by k (patches kept per image): a forward pass needs one k,
// and padding to a common k would waste the FLOPs masking saved. A bucket is
// dispatched when its tokens (sum of b*(k+1)) reach the budget, when its
// oldest work has waited max_queue_delay, when waiting that long would run
// some work past its deadline, or when draining. Within a batch, jobs take
// turns by tokens served divided by their weight (weighted start-time fair
// queuing), so one job's backlog cannot starve another's, and a job of
// weight 2 is served twice the tokens of a job of weight 1 while both wait.
//
// Not thread-safe: the Batcher serialises calls under its mutex.
#ifndef MKD_TEACHER_SERVER_BATCH_QUEUE_H_
#define MKD_TEACHER_SERVER_BATCH_QUEUE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mkd::teacher {

struct QueuedWork {
  std::string job_id;
  double weight = 1.0;       // The job's share relative to others (> 0).
  int64_t images = 0;        // b
  int64_t kept_patches = 0;  // k (patch tokens; +1 CLS in the budget)
  absl::Time enqueued;
  absl::Time deadline = absl::InfiniteFuture();
  uint64_t ticket = 0;  // Set by Push: the owner's handle on the payload.

  int64_t tokens() const { return images * (kept_patches + 1); }
};

struct BatchQueueOptions {
  int64_t max_tokens_per_batch = 16384;
  absl::Duration max_queue_delay = absl::Microseconds(2000);
  int64_t max_queued = 512;          // Micro-batches waiting, all jobs.
  int64_t max_queued_per_job = 128;  // ... and per job.
  // A job with nothing queued whose last work arrived this long ago is
  // forgotten (it rejoins, if ever, at the current virtual time).
  absl::Duration job_idle = absl::Minutes(10);
  // A job whose queue ran empty less than this ago keeps its place in the
  // fair-share order when it comes back: a training job's queue empties at
  // the end of every step while its student computes, and resetting it each
  // time would hand that gap's service to the others for good. After a
  // longer absence it rejoins at the current virtual time (no banked credit).
  // One second covers a student's step on a slow CPU (about 150 ms under
  // ASan here; 100 ms, the old default, cost a weight-2 job a third of its
  // share there); what a returning job can catch up is bounded by what the
  // others were served in its absence.
  absl::Duration fair_share_grace = absl::Seconds(1);
};

class BatchQueue {
 public:
  explicit BatchQueue(BatchQueueOptions options) : options_(options) {}

  // Queues `work` and returns its ticket; kResourceExhausted (naming the
  // limit) when the queue or the job's share of it is full.
  absl::StatusOr<uint64_t> Push(QueuedWork work);

  // Removes and returns the work whose deadline is at or before `now`.
  std::vector<QueuedWork> TakeExpired(absl::Time now);

  // Removes and returns the next batch if one should run at `now` (all work
  // has the same k, in fair-share order); otherwise returns nothing and sets
  // *wake_at to when a batch or a deadline falls due (InfiniteFuture when
  // empty). With `drain`, any waiting work is dispatched at once.
  std::vector<QueuedWork> TakeBatch(absl::Time now, bool drain, absl::Time* wake_at);

  // Distill streams with work in flight on the server. With at most one,
  // no company is coming from anyone else, so waiting max_queue_delay
  // would only add latency: work is due at once (what queues behind a
  // running batch is still batched). An idle stream (a job between steps)
  // does not count: its next micro-batch joins the next batch.
  void set_active_streams(int64_t n) { active_streams_ = n; }

  int64_t size() const { return total_; }
  // Tokens (sum of b*(k+1)) served per job so far, divided by the job's
  // weight (its virtual time), for fairness tests.
  double served_tokens(const std::string& job) const;
  // Jobs whose state is kept (queued work, or active within job_idle).
  int64_t tracked_jobs() const { return static_cast<int64_t>(served_.size()); }

 private:
  struct Bucket {
    std::map<std::string, std::deque<QueuedWork>> by_job;
    int64_t tokens = 0;
  };
  absl::Time Oldest(const Bucket& b) const;
  void ForgetIdleJobs(absl::Time now);

  const BatchQueueOptions options_;
  std::map<int64_t, Bucket> buckets_;      // By k.
  std::map<std::string, int64_t> queued_;  // Work per job.
  std::map<std::string, double> served_;   // Virtual time per job: tokens / weight.
  std::map<std::string, absl::Time> last_push_;
  std::map<std::string, absl::Time> emptied_;  // When the job's queue last ran empty.
  int64_t total_ = 0;
  int64_t active_streams_ = 2;  // Until told: assume company may come.
  uint64_t next_ticket_ = 1;
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_BATCH_QUEUE_H_
