#include "student_worker/student_metrics.h"

#include "common/build_info_metric.h"
#include "prometheus/text_serializer.h"

namespace mkd::student {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

using Labels = std::map<std::string, std::string>;

prometheus::Gauge& Gauge(prometheus::Registry& r, const Labels& labels, const char* name,
                         const char* help) {
  return BuildGauge().Name(name).Help(help).Register(r).Add(labels);
}
prometheus::Counter& Counter(prometheus::Registry& r, const Labels& labels, const char* name,
                             const char* help) {
  return BuildCounter().Name(name).Help(help).Register(r).Add(labels);
}

}  // namespace

StudentMetrics::StudentMetrics(const std::map<std::string, std::string>& labels)
    : registry_(std::make_shared<prometheus::Registry>()),
      step_(Gauge(*registry_, labels, "mkd_student_step", "Optimisation steps completed.")),
      images_per_s_(Gauge(*registry_, labels, "mkd_student_images_per_second",
                          "Training throughput over the last step.")),
      loss_(Gauge(*registry_, labels, "mkd_student_loss", "Training loss of the last step.")),
      micro_batches_(Gauge(*registry_, labels, "mkd_student_micro_batches",
                           "Micro-batches per step (m) in use.")),
      step_seconds_(
          Gauge(*registry_, labels, "mkd_student_step_seconds", "Measured time of the last step.")),
      predicted_step_seconds_(
          Gauge(*registry_, labels, "mkd_student_predicted_step_seconds",
                "The pool planner's predicted step time for this m (0: no plan).")),
      bubble_(Gauge(*registry_, labels, "mkd_student_bubble_fraction",
                    "Fraction of the last step spent waiting for teacher answers.")),
      round_trip_(BuildHistogram()
                      .Name("mkd_student_teacher_round_trip_seconds")
                      .Help("Per micro-batch: last send to the teacher's answer.")
                      .Register(*registry_)
                      .Add(labels,
                           prometheus::Histogram::BucketBoundaries{
                               0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10})),
      flops_(Counter(*registry_, labels, "mkd_student_teacher_flops_total",
                     "Teacher FLOPs this job's micro-batches cost (analytic).")),
      flops_saved_(Counter(*registry_, labels, "mkd_student_teacher_flops_saved_total",
                           "Teacher FLOPs masking saved against the full image.")),
      retries_(Counter(*registry_, labels, "mkd_student_teacher_retries_total",
                       "Micro-batches re-sent after a retryable answer.")),
      failovers_(Counter(*registry_, labels, "mkd_student_teacher_failovers_total",
                         "Micro-batches moved off a broken or removed teacher.")) {
  AddBuildInfoMetric(*registry_, "mkd-student");
  auto& stages = BuildHistogram()
                     .Name("mkd_student_stage_seconds")
                     .Help(
                         "Per micro-batch: the time of one stage of its path, from the "
                         "student's forward to its backward (stage names: "
                         "common/micro_batch_stages.h); device stages are timed on the "
                         "device.")
                     .Register(*registry_);
  for (Stage s : AllStages()) {
    Labels with_stage = labels;
    with_stage["stage"] = std::string(StageName(s));
    prometheus::Histogram::BucketBoundaries b;
    for (double v = 2e-5; b.size() < 15; v *= 2.5) b.push_back(v);  // 20 us .. 7.5 s
    stage_seconds_.push_back(&stages.Add(with_stage, b));
  }
}

void StudentMetrics::Observe(const StepReport& r) {
  step_.Set(static_cast<double>(r.step));
  images_per_s_.Set(r.images_per_s);
  loss_.Set(r.loss);
  micro_batches_.Set(r.micro_batches);
  step_seconds_.Set(r.step_s);
  predicted_step_seconds_.Set(r.predicted_step_s);
  bubble_.Set(r.bubble);
  for (double s : r.round_trips_s) round_trip_.Observe(s);
  flops_.Increment(r.teacher_flops);
  flops_saved_.Increment(r.teacher_flops_saved);
  retries_.Increment(static_cast<double>(r.retries));
  failovers_.Increment(static_cast<double>(r.failovers));
  for (const StageSeconds& mb : r.stages) {
    for (Stage s : AllStages()) {
      if (mb.has(s)) stage_seconds_[static_cast<int>(s)]->Observe(mb.get(s));
    }
  }
}

std::string StudentMetrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace mkd::student
