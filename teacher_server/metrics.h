// Every metric mkd-teacher exports, with its name and help string, in one
// place (Prometheus conventions: mkd_teacher_<what>_<unit>, base units,
// counters end in _total). Built on prometheus-cpp's core registry; the
// HTTP side is MetricsHttpServer. Thread-safe.
#ifndef MKD_TEACHER_SERVER_METRICS_H_
#define MKD_TEACHER_SERVER_METRICS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace mkd::teacher {

class TeacherMetrics {
 public:
  TeacherMetrics();

  // One answered micro-batch, by its gRPC status code.
  void CountRequest(absl::StatusCode code);
  // Micro-batches answered with `code` so far (tests wait on it).
  int64_t requests(absl::StatusCode code);
  void AddReceivedBytes(int64_t bytes) { received_bytes_.Increment(static_cast<double>(bytes)); }
  void AddInFlight(int delta) { in_flight_.Increment(delta); }
  void SetQueued(int64_t n) { queued_.Set(static_cast<double>(n)); }
  // Micro-batches waiting for a forward pass now (tests wait on it).
  int64_t queued() const { return static_cast<int64_t>(queued_.Value()); }
  int64_t in_flight() const { return static_cast<int64_t>(in_flight_.Value()); }
  // Tokens (sum of b*(k+1)) computed so far, for the pool's load reports.
  int64_t tokens_served() const { return tokens_served_.load(); }
  void ObserveQueueSeconds(double s) { queue_seconds_.Observe(s); }
  // One forward pass: its time, size, and FLOPs (spent; saved vs all N
  // patches).
  void ObserveBatch(double compute_seconds, int64_t images, int64_t tokens, double flops,
                    double flops_saved);
  // Tokens (b*(k+1)) answered for `job_id` (mkd_teacher_job_served_tokens_total):
  // each job's share of this teacher, what its fair queuing divides. One
  // series per job served since the teacher started.
  void CountJobServedTokens(const std::string& job_id, int64_t tokens);

  // The time of one stage of the server's path (mkd_teacher_stage_seconds):
  // per micro-batch "decode" (validation, digest, decode) and "encode" (the
  // answer); per batched forward pass "assemble" (the batch in pinned
  // memory, its copy to the device started) and "forward" (the forward and
  // the logits back on the host). Queueing is mkd_teacher_queue_seconds.
  enum class ServerStage { kDecode, kAssemble, kForward, kEncode };
  void ObserveStage(ServerStage stage, double seconds);

  void SetDeviceMemoryPeakBytes(int64_t bytes) {
    device_memory_peak_.Set(static_cast<double>(bytes));
  }

  void SetBatchTokenBudget(int64_t tokens) { batch_token_budget_.Set(static_cast<double>(tokens)); }

  // A stream or micro-batch refused by a limit (stream_limits.h): one of
  // "streams_per_client", "streams_per_job", "in_flight_per_job",
  // "idle_stream".
  void CountLimitRefusal(absl::string_view limit);
  int64_t limit_refusals(absl::string_view limit);
  void SetOpenStreams(int64_t n) { open_streams_.Set(static_cast<double>(n)); }
  // A Distill stream opened on `data_plane` ("grpc" or "shm"), and the
  // shared-memory regions held now (the streams' and their answers').
  void CountStream(absl::string_view data_plane);
  int64_t streams(absl::string_view data_plane);
  void AddShmRegions(int delta) { shm_regions_.Increment(delta); }
  int64_t shm_regions() const { return static_cast<int64_t>(shm_regions_.Value()); }
  // A stream refused by the pool's checks, by reason (kAuthRefusalReasons).
  void CountAuthRefusal(absl::string_view reason);
  int64_t auth_refusals(absl::string_view reason);

  // The exposition text of every metric (text format 0.0.4).
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  // Serialises Add on the labelled families requests_ and limit_refusals_
  // (references, which the annotations cannot name).
  Mutex mu_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Counter& received_bytes_;
  prometheus::Gauge& in_flight_;
  prometheus::Gauge& queued_;
  prometheus::Histogram& queue_seconds_;
  prometheus::Histogram& compute_seconds_;
  prometheus::Histogram* stage_seconds_[4];  // By ServerStage.
  prometheus::Histogram& batch_images_;
  prometheus::Histogram& batch_tokens_;
  prometheus::Counter& flops_;
  prometheus::Counter& flops_saved_;
  prometheus::Counter& batches_;
  prometheus::Gauge& device_memory_peak_;
  prometheus::Gauge& batch_token_budget_;
  prometheus::Family<prometheus::Counter>& limit_refusals_;
  prometheus::Gauge& open_streams_;
  prometheus::Family<prometheus::Counter>& streams_;
  prometheus::Gauge& shm_regions_;
  prometheus::Family<prometheus::Counter>& auth_refusals_;
  prometheus::Family<prometheus::Counter>& job_served_tokens_;
  std::atomic<int64_t> tokens_served_{0};
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_METRICS_H_
