#include "teacher_server/metrics.h"

#include "common/build_info_metric.h"
#include "prometheus/text_serializer.h"
#include "rpc/pool_auth.h"

namespace mkd::teacher {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// Powers of `factor` from `start`, `n` of them: Prometheus buckets.
Histogram::BucketBoundaries Exponential(double start, double factor, int n) {
  Histogram::BucketBoundaries b;
  for (int i = 0; i < n; ++i, start *= factor) b.push_back(start);
  return b;
}

const char* CodeName(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return "OK";
    case absl::StatusCode::kCancelled:
      return "CANCELLED";
    case absl::StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case absl::StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case absl::StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case absl::StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case absl::StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case absl::StatusCode::kInternal:
      return "INTERNAL";
    default:
      return "OTHER";
  }
}

}  // namespace

TeacherMetrics::TeacherMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(BuildCounter()
                    .Name("mkd_teacher_requests_total")
                    .Help("Micro-batches answered, by gRPC status code.")
                    .Register(*registry_)),
      received_bytes_(BuildCounter()
                          .Name("mkd_teacher_received_bytes_total")
                          .Help("Bytes of DistillRequest messages received.")
                          .Register(*registry_)
                          .Add({})),
      in_flight_(BuildGauge()
                     .Name("mkd_teacher_in_flight_requests")
                     .Help("Micro-batches accepted and not yet answered.")
                     .Register(*registry_)
                     .Add({})),
      queued_(BuildGauge()
                  .Name("mkd_teacher_queued_requests")
                  .Help("Micro-batches waiting in the batcher's queue.")
                  .Register(*registry_)
                  .Add({})),
      queue_seconds_(BuildHistogram()
                         .Name("mkd_teacher_queue_seconds")
                         .Help("Time from a micro-batch's arrival to the start of its batch.")
                         .Register(*registry_)
                         .Add({}, Exponential(1e-4, 2.5, 14))),
      compute_seconds_(BuildHistogram()
                           .Name("mkd_teacher_compute_seconds")
                           .Help("Time of one batched teacher forward pass.")
                           .Register(*registry_)
                           .Add({}, Exponential(1e-4, 2.5, 14))),
      batch_images_(BuildHistogram()
                        .Name("mkd_teacher_batch_images")
                        .Help("Images per batched forward pass.")
                        .Register(*registry_)
                        .Add({}, Exponential(1, 2, 11))),
      batch_tokens_(BuildHistogram()
                        .Name("mkd_teacher_batch_tokens")
                        .Help("Tokens (sum of b*(k+1)) per batched forward pass.")
                        .Register(*registry_)
                        .Add({}, Exponential(64, 2, 12))),
      flops_(BuildCounter()
                 .Name("mkd_teacher_flops_total")
                 .Help("Teacher FLOPs spent on forward passes (analytic count).")
                 .Register(*registry_)
                 .Add({})),
      flops_saved_(BuildCounter()
                       .Name("mkd_teacher_flops_saved_total")
                       .Help("Teacher FLOPs not spent because patches were masked.")
                       .Register(*registry_)
                       .Add({})),
      batches_(BuildCounter()
                   .Name("mkd_teacher_batches_total")
                   .Help("Batched forward passes run.")
                   .Register(*registry_)
                   .Add({})),
      device_memory_peak_(BuildGauge()
                              .Name("mkd_teacher_device_memory_peak_bytes")
                              .Help("Peak GPU memory held by the teacher's tensors since start "
                                    "(LibTorch's caching allocator); 0 on a CPU teacher.")
                              .Register(*registry_)
                              .Add({})),
      batch_token_budget_(BuildGauge()
                              .Name("mkd_teacher_batch_token_budget")
                              .Help("The batcher's token budget per forward pass (batch fill = "
                                    "mkd_teacher_batch_tokens / this).")
                              .Register(*registry_)
                              .Add({})),
      limit_refusals_(BuildCounter()
                          .Name("mkd_teacher_limit_refusals_total")
                          .Help("Streams and micro-batches refused by a limit (config "
                                "limits.*), by limit; idle_stream: streams ended for idling.")
                          .Register(*registry_)),
      open_streams_(BuildGauge()
                        .Name("mkd_teacher_open_streams")
                        .Help("Distill streams open now.")
                        .Register(*registry_)
                        .Add({})),
      streams_(BuildCounter()
                   .Name("mkd_teacher_streams_total")
                   .Help("Distill streams opened, by the data plane they carry bytes on: grpc "
                         "(in the messages) or shm (a student's shared-memory region).")
                   .Register(*registry_)),
      shm_regions_(BuildGauge()
                       .Name("mkd_teacher_shm_regions")
                       .Help("Students' shared-memory regions this teacher holds open now.")
                       .Register(*registry_)
                       .Add({})),
      auth_refusals_(BuildCounter()
                         .Name("mkd_teacher_auth_refusals_total")
                         .Help("Distill streams refused by the pool's checks, by reason: "
                               "missing, invalid or expired credentials, the wrong role, or "
                               "another job's.")
                         .Register(*registry_)),
      job_served_tokens_(BuildCounter()
                             .Name("mkd_teacher_job_served_tokens_total")
                             .Help("Tokens (b*(k+1)) answered per job: each job's share of "
                                   "this teacher.")
                             .Register(*registry_)) {
  AddBuildInfoMetric(*registry_, "mkd-teacher");
  // Every label up front, so each series exists (at 0) from the start.
  for (const char* limit :
       {"streams_per_client", "streams_per_job", "in_flight_per_job", "idle_stream"}) {
    limit_refusals_.Add({{"limit", limit}});
  }
  for (const char* reason : rpc::kAuthRefusalReasons) auth_refusals_.Add({{"reason", reason}});
  for (const char* plane : {"grpc", "shm"}) streams_.Add({{"data_plane", plane}});
  auto& stages = BuildHistogram()
                     .Name("mkd_teacher_stage_seconds")
                     .Help(
                         "Time of one stage of the server's path: per micro-batch decode "
                         "(validation, digest, decode) and encode (the answer); per forward "
                         "pass assemble (the batch in memory, its copy started) and forward "
                         "(the forward, logits back on the host).")
                     .Register(*registry_);
  const char* names[] = {"decode", "assemble", "forward", "encode"};
  for (int i = 0; i < 4; ++i) {
    stage_seconds_[i] = &stages.Add({{"stage", names[i]}}, Exponential(2e-5, 2.5, 15));
  }
}

void TeacherMetrics::CountStream(absl::string_view data_plane) {
  MutexLock lock(&mu_);
  streams_.Add({{"data_plane", std::string(data_plane)}}).Increment();
}

int64_t TeacherMetrics::streams(absl::string_view data_plane) {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(streams_.Add({{"data_plane", std::string(data_plane)}}).Value());
}

void TeacherMetrics::ObserveStage(ServerStage stage, double seconds) {
  stage_seconds_[static_cast<int>(stage)]->Observe(seconds);
}

void TeacherMetrics::CountRequest(absl::StatusCode code) {
  MutexLock lock(&mu_);
  requests_.Add({{"code", CodeName(code)}}).Increment();
}

int64_t TeacherMetrics::requests(absl::StatusCode code) {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(requests_.Add({{"code", CodeName(code)}}).Value());
}

// prometheus::Family::Add is thread-safe and returns the existing series.
void TeacherMetrics::CountJobServedTokens(const std::string& job_id, int64_t tokens) {
  job_served_tokens_.Add({{"job_id", job_id}}).Increment(static_cast<double>(tokens));
}

void TeacherMetrics::ObserveBatch(double compute_seconds, int64_t images, int64_t tokens,
                                  double flops, double flops_saved) {
  compute_seconds_.Observe(compute_seconds);
  batch_images_.Observe(static_cast<double>(images));
  batch_tokens_.Observe(static_cast<double>(tokens));
  tokens_served_ += tokens;
  flops_.Increment(flops);
  flops_saved_.Increment(flops_saved);
  batches_.Increment();
}

void TeacherMetrics::CountLimitRefusal(absl::string_view limit) {
  MutexLock lock(&mu_);
  limit_refusals_.Add({{"limit", std::string(limit)}}).Increment();
}

int64_t TeacherMetrics::limit_refusals(absl::string_view limit) {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(limit_refusals_.Add({{"limit", std::string(limit)}}).Value());
}

void TeacherMetrics::CountAuthRefusal(absl::string_view reason) {
  MutexLock lock(&mu_);
  auth_refusals_.Add({{"reason", std::string(reason)}}).Increment();
}

int64_t TeacherMetrics::auth_refusals(absl::string_view reason) {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(auth_refusals_.Add({{"reason", std::string(reason)}}).Value());
}

std::string TeacherMetrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace mkd::teacher
