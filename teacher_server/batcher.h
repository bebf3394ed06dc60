// The dynamic batcher: merges micro-batches from every stream and job into
// forward passes of the Engine, on one thread of its own. Policy (buckets by
// k, token budget, queue delay, fair share, limits) lives in BatchQueue;
// this class adds the clock, the thread, the tensors and the answers.
//
// Thread-safe. Submit never blocks on compute: it queues and returns.
#ifndef MKD_TEACHER_SERVER_BATCHER_H_
#define MKD_TEACHER_SERVER_BATCHER_H_

#include <torch/types.h>

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "common/thread.h"
#include "teacher_server/batch_queue.h"
#include "teacher_server/engine.h"
#include "teacher_server/metrics.h"
#include "teacher_server/server_config.h"

namespace mkd::teacher {

struct WorkItem {
  std::string job_id;
  double weight = 1.0;    // The job's fair-share weight (> 0).
  torch::Tensor patches;  // [b, k, C*p*p] in the wire's float dtype, CPU
  torch::Tensor idx;      // [b, k] int64
  bool features = false;
  absl::Time deadline = absl::InfiniteFuture();
};

struct WorkResult {
  absl::Status status;  // kDeadlineExceeded if dropped, engine errors as is.
  EngineOutput output;  // This work's rows only.
  double queue_seconds = 0;
  double compute_seconds = 0;  // The batch's assembly, forward and logits back.
  int batched_with = 0;
};

using WorkDone = std::function<void(WorkResult)>;

class Batcher {
 public:
  // `engine` and `metrics` (may be null) must outlive the Batcher.
  // A job with nothing queued whose last work arrived `job_idle` ago is
  // forgotten (its fair-share clock).
  Batcher(Engine* engine, const BatcherConfig& config, absl::Duration job_idle,
          TeacherMetrics* metrics);
  ~Batcher();  // Shutdown().

  // Queues `item`. On OK, `done` is called exactly once, on the batcher's
  // thread, and must not block. kResourceExhausted when the queue (or the
  // job's share) is full, kUnavailable after Shutdown began; then `done`
  // is not called.
  absl::Status Submit(WorkItem item, WorkDone done);

  // Stops accepting work, computes everything already accepted, answers
  // it, and joins the thread. Idempotent.
  void Shutdown();

  // False once Shutdown began.
  bool accepting();

  // Distill streams with micro-batches in flight
  // (BatchQueue::set_active_streams).
  void SetActiveStreams(int64_t n);

 private:
  struct Pending {
    WorkItem item;
    WorkDone done;
    absl::Time enqueued;
  };
  // One forward pass on its way through the engine's phases.
  struct InFlight {
    std::vector<Pending> work;
    EngineInput input;
    bool uploaded = false;
    // The launched output, or the error of whichever phase failed.
    absl::StatusOr<EngineOutput> output = absl::InternalError("not launched");
    absl::Time start;
    double forward_seconds = 0;  // Launch and Collect.
    bool features = false;
    int64_t images = 0, tokens = 0, kept_patches = 0;
  };
  void Loop();
  // The engine's phases for `batch` (see engine.h); errors are carried in
  // InFlight::output and answered by Complete.
  InFlight Upload(std::vector<QueuedWork> batch);
  InFlight Launch(InFlight f);
  void Complete(InFlight f);  // Waits for the device and answers every item.
  // The thread died of a bug: answers every accepted item with `why`, and
  // Submit refuses from now on. Accepted work is never left unanswered.
  void FailPending(const absl::Status& why);

  Engine* const engine_;
  TeacherMetrics* const metrics_;
  const ViTConfig model_;

  Mutex mu_;
  CondVar wake_;
  BatchQueue queue_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);  // By ticket.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Thread thread_;
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_BATCHER_H_
