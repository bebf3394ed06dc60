// What each client and each job holds of this teacher: open Distill streams
// and micro-batches in flight, checked against LimitsConfig before more is
// taken. A refusal is RESOURCE_EXHAUSTED naming the limit and its config
// key, and is counted in mkd_teacher_limit_refusals_total{limit}.
// Torch-free; thread-safe.
#ifndef MKD_TEACHER_SERVER_STREAM_LIMITS_H_
#define MKD_TEACHER_SERVER_STREAM_LIMITS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/mutex.h"
#include "teacher_server/metrics.h"
#include "teacher_server/server_config.h"

namespace mkd::teacher {

// The client part of a gRPC peer string: "ipv4:10.0.0.7:53122" ->
// "ipv4:10.0.0.7", "ipv6:[::1]:80" -> "ipv6:[::1]"; others unchanged.
std::string PeerHost(absl::string_view peer);

class StreamLimits {
 public:
  // `metrics` may be null.
  StreamLimits(const LimitsConfig& config, TeacherMetrics* metrics);

  // A new stream from `client`; on OK the caller must CloseStream it.
  absl::Status OpenStream(const std::string& client) ABSL_LOCKS_EXCLUDED(mu_);
  // The stream's first micro-batch named `job`; on OK the stream counts
  // for the job until CloseStream(client, job).
  absl::Status BindJob(const std::string& job) ABSL_LOCKS_EXCLUDED(mu_);
  // `job` is "" for a stream that was never bound.
  void CloseStream(const std::string& client, const std::string& job) ABSL_LOCKS_EXCLUDED(mu_);

  // One micro-batch of `job` accepted; on OK the caller must Release it
  // once answered.
  absl::Status Admit(const std::string& job) ABSL_LOCKS_EXCLUDED(mu_);
  void Release(const std::string& job) ABSL_LOCKS_EXCLUDED(mu_);

  int64_t open_streams() ABSL_LOCKS_EXCLUDED(mu_);
  int64_t in_flight(const std::string& job) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Status Refuse(absl::string_view limit, absl::string_view what, int64_t max);

  const LimitsConfig config_;
  TeacherMetrics* const metrics_;

  Mutex mu_;
  std::map<std::string, int64_t> client_streams_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> job_streams_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> job_in_flight_ ABSL_GUARDED_BY(mu_);
  int64_t open_streams_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_STREAM_LIMITS_H_
