// GPipe planning for one job: how many micro-batches m a training step of B
// images should be split into, from the job's measured timings. Pure
// functions, no clock or threads (coordinator/README.md derives the model).
//
// The trainer runs a step as: the student's forward of micro-batch 1..m,
// each sending its teacher request as it ends; then, in order, as each
// answer arrives, that micro-batch's loss and backward. A bigger m starts
// the teacher sooner and hides more of its latency, but each micro-batch
// pays fixed costs (kernel launches, a round trip), so per-image costs rise
// as b = B/m shrinks. PredictStep simulates exactly that schedule.
#ifndef MKD_COORDINATOR_PLANNER_H_
#define MKD_COORDINATOR_PLANNER_H_

#include <cstdint>
#include <vector>

namespace mkd::coordinator {

// Costs of one micro-batch of b images, each `fixed + per_image * b`
// seconds.
struct Cost {
  double fixed = 0;
  double per_image = 0;
  double At(double b) const { return fixed + per_image * b; }
};

struct StepModel {
  Cost forward;        // Student forward (with saliency, selection, encoding).
  Cost backward;       // Student loss and backward.
  Cost service;        // Teacher compute for one micro-batch (its share of the forward
                       // it rode in); queueing is what the plan simulates, not this.
  double latency = 0;  // Round trip beyond the service: network, decoding.
  // The teachers compute on the student's own device (one GPU): their work
  // and the student's take turns instead of overlapping, so pipelining
  // hides only the latency, never the teacher's compute.
  bool shared_device = false;
};

struct StepPrediction {
  double step_s = 0;
  // Fraction of the step the student spends waiting for answers.
  double bubble = 0;
};

// The step time of `batch` images in `m` micro-batches (the trainer's split:
// batch / m rows each, the first batch % m one more). With a shared device,
// one timeline runs everything in the order it becomes ready: the
// forwards, each teacher service once its request arrives, each backward
// once its answer is in. REQUIRES: 1 <= m <= batch.
StepPrediction PredictStep(const StepModel& model, int64_t batch, int m);

// What a job measured while running with m micro-batches (means per
// micro-batch, as JobTimings carries them).
struct TimingSample {
  int m = 0;
  double images = 0;  // b: images per micro-batch.
  double forward_s = 0;
  double backward_s = 0;
  double round_trip_s = 0;  // Less the server's queueing (JobTimings).
  double service_s = 0;     // JobTimings.teacher_compute_s.
};

// Least-squares fit of each Cost over the samples' b. With samples at a
// single b the fixed parts cannot be told apart and are taken as 0; a fit
// with a negative fixed part is refitted through the origin.
StepModel FitStepModel(const std::vector<TimingSample>& samples);

struct Plan {
  int m = 1;
  StepPrediction prediction;
};

// The m in [1, min(max_m, batch)] with the shortest predicted step; a
// longer m must win by more than 1% (fewer micro-batches are cheaper to run
// and to explain).
Plan BestPlan(const StepModel& model, int64_t batch, int max_m);

// The m values measured before the first fit: 1, 2, 4, 8 within
// [1, min(max_m, batch)].
std::vector<int> ExploreCandidates(int64_t batch, int max_m);

}  // namespace mkd::coordinator

#endif  // MKD_COORDINATOR_PLANNER_H_
