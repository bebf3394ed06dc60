// The job's side of a teacher pool, as the trainer sees it: the plan (how
// many micro-batches a step should have, and the step time predicted for
// it) and the telemetry that feeds the planner. Torch-free.
#ifndef MKD_TEACHER_CLIENT_POOL_SESSION_H_
#define MKD_TEACHER_CLIENT_POOL_SESSION_H_

#include <cstdint>
#include <vector>

namespace mkd::client {

// What the trainer measured over one distill step, for the pool's planner
// (per micro-batch means, seconds).
struct StepTimings {
  int64_t step = 0;
  int micro_batches = 1;
  double forward_s = 0;   // Student forward, selection and submission.
  double backward_s = 0;  // Loss and backward, after the answer arrived.
  double step_s = 0;
  double images_per_s = 0;
  double predicted_step_s = 0;  // The plan's prediction for this m (0: none).
};

// What a remote teacher saw since the last TakeStats.
struct TeacherStats {
  std::vector<double> round_trips_s;  // Per answered micro-batch: last send to answer.
  double service_s = 0;               // Sum of server queue + compute over them.
  int64_t retries = 0;                // Re-sends after a retryable answer.
  int64_t failovers = 0;              // Micro-batches moved off a broken or removed teacher.
};

// Thread-safe.
class PoolSession {
 public:
  virtual ~PoolSession() = default;
  // The pool's plan: micro-batches per step (0: no plan; the trainer keeps
  // its own m) and the step time it predicts (0: none).
  virtual int PlannedMicroBatches() = 0;
  virtual double PredictedStepSeconds() = 0;
  // One step's timings, for the planner.
  virtual void ReportStep(const StepTimings& t) = 0;
  // Round trips and failure handling since the last call.
  virtual TeacherStats TakeStats() = 0;
};

}  // namespace mkd::client

#endif  // MKD_TEACHER_CLIENT_POOL_SESSION_H_
