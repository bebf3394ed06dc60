// Every metric mkd-student exports on run.metrics_listen, with its name and
// help string, in one place (mkd_student_<what>_<unit>; counters end in
// _total). The trainer updates them after each step. Torch-free.
// Thread-safe (prometheus-cpp's metrics are).
#ifndef MKD_STUDENT_WORKER_STUDENT_METRICS_H_
#define MKD_STUDENT_WORKER_STUDENT_METRICS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/micro_batch_stages.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace mkd::student {

struct StepReport {
  int64_t step = 0;
  double images_per_s = 0;
  double loss = 0;
  int micro_batches = 1;
  double step_s = 0;
  double predicted_step_s = 0;  // 0: no plan.
  double bubble = 0;            // Fraction of the step spent waiting for answers.
  double teacher_flops = 0;     // Spent in this step.
  double teacher_flops_saved = 0;
  std::vector<double> round_trips_s;
  int64_t retries = 0;
  int64_t failovers = 0;
  std::vector<StageSeconds> stages;  // Per micro-batch.
};

class StudentMetrics {
 public:
  // `labels` go on every series (a data-parallel rank's {"rank": "r"}).
  explicit StudentMetrics(const std::map<std::string, std::string>& labels = {});
  void Observe(const StepReport& r);
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge& step_;
  prometheus::Gauge& images_per_s_;
  prometheus::Gauge& loss_;
  prometheus::Gauge& micro_batches_;
  prometheus::Gauge& step_seconds_;
  prometheus::Gauge& predicted_step_seconds_;
  prometheus::Gauge& bubble_;
  prometheus::Histogram& round_trip_;
  prometheus::Counter& flops_;
  prometheus::Counter& flops_saved_;
  prometheus::Counter& retries_;
  prometheus::Counter& failovers_;
  std::vector<prometheus::Histogram*> stage_seconds_;  // By Stage.
};

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_STUDENT_METRICS_H_
