// RemoteTeacher's class (see remote_teacher.h for what it does), shared by
// remote_teacher.cc (routing, retries, failover) and
// remote_teacher_pool.cc (channels, ModelInfo checks, the coordinator).
// Internal to student_worker/.
#ifndef MKD_TEACHER_CLIENT_REMOTE_TEACHER_IMPL_H_
#define MKD_TEACHER_CLIENT_REMOTE_TEACHER_IMPL_H_

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/device_to_host.h"
#include "common/log.h"
#include "common/mutex.h"
#include "common/thread.h"
#include "maskedkd/v1/coordinator.pb.h"
#include "maskedkd/v1/teacher.grpc.pb.h"
#include "teacher_client/job_membership.h"
#include "teacher_client/remote_teacher.h"
#include "teacher_client/teacher_stream.h"

namespace mkd::client {

namespace v1 = ::maskedkd::v1;

// A channel tuned for micro-batches: quick reconnects, large windows and
// messages, keepalive pings so a dead peer is noticed without traffic.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeTeacherChannel(const std::string& address,
                                                                  const TlsOptions& tls);

// Thread-safe: the trainer submits, stream readers answer, the retry
// thread re-sends, the membership thread changes the teachers.
class RemoteTeacher final : public Teacher, public PoolSession {
 public:
  RemoteTeacher(const RemoteTeacherOptions& options, v1::DType wire, const v1::ModelInfo& info);
  ~RemoteTeacher() override;

  // Starts streaming to `address` (its ModelInfo `info` checked by the
  // caller), on the data plane options_ and the teacher's host give.
  void AddEndpoint(const std::string& address, std::shared_ptr<grpc::Channel> channel,
                   const v1::ModelInfo& info);
  // Stops using every teacher not in `keep`; their unanswered micro-batches
  // move to the others.
  void KeepOnly(const std::set<std::string>& keep);
  bool HasEndpoint(const std::string& address);
  // The coordinator's assignment (called on the membership's thread).
  void OnAssignment(const v1::Assignment& assignment);
  void AttachMembership(std::unique_ptr<JobMembership> membership);
  // Blocks until some teacher's stream is open or `wait` passes.
  bool WaitForEndpoint(absl::Duration wait);

  const ViTConfig& config() const override { return config_; }
  absl::StatusOr<torch::Tensor> Logits(const torch::Tensor& images,
                                       const torch::Tensor& idx) override;
  PendingLogits SubmitLogits(const torch::Tensor& images, const torch::Tensor& idx) override;
  Stage SubmitStage() const override { return Stage::kDeviceToHost; }
  absl::StatusOr<torch::Tensor> Saliency(const torch::Tensor&) override;
  PoolSession* session() override { return this; }
  int PlannedMicroBatches() override { return planned_m_.load(); }
  double PredictedStepSeconds() override;
  void ReportStep(const StepTimings& t) override;
  TeacherStats TakeStats() override;
  // Means since the last call, for the coordinator's heartbeat.
  v1::JobTimings TakeJobTimings();

 private:
  struct Endpoint {
    std::unique_ptr<TeacherStream> stream;
    int64_t max_request_bytes = 0;  // 0: no limit known.
    bool connected = false;
    int64_t outstanding_tokens = 0;
  };
  struct Pending {
    SharedMicroBatch mb;
    std::promise<absl::StatusOr<TeacherAnswer>> promise;
    std::string endpoint;                       // Where it was last sent; "" while unrouted.
    int64_t tokens = 0;                         // b * (k + 1)
    int attempts = 0;                           // Sends so far.
    absl::Time sent;                            // Handed to the stream.
    absl::Time written = absl::InfinitePast();  // Its write returned ...
    double encode_s = 0;                        // ... after this much encoding.
    absl::Status last_error = absl::UnavailableError("no teacher has answered yet");
    bool retry_scheduled = false;
  };
  using Fulfil = std::vector<std::pair<std::promise<absl::StatusOr<TeacherAnswer>>, absl::Status>>;

  // OnAssignment's work, under assign_mu_; what it has to say goes to *said.
  void ApplyAssignment(const v1::Assignment& a,
                       std::vector<std::pair<LogSeverity, std::string>>* said);
  void OnConnected(const std::string& address);
  void OnAnswer(const std::string& address, const v1::DistillResponse& r);
  void OnWritten(const std::string& address, uint64_t id, double encode_s);
  // The answer's logits, decoded (into pinned memory for a CUDA student).
  absl::StatusOr<torch::Tensor> DecodeLogits(const std::string& address,
                                             const v1::DistillResponse& r, int64_t batch) const;
  void OnBroken(const std::string& address, const absl::Status& why);
  // Sends pending `id` to the least loaded connected teacher, or leaves it
  // unrouted; fails it (into *failed) past max_attempts.
  void Route(uint64_t id, Fulfil* failed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves every micro-batch sent to `address` elsewhere.
  void Reroute(const std::string& address, bool failover, Fulfil* failed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RetryLoop();
  // The retry thread died: every pending micro-batch, and every later
  // one, fails with `why` (nothing would retry or time them out).
  void FailEverything(const absl::Status& why);
  static void Deliver(Fulfil& failed);

  // Constant after construction.
  const RemoteTeacherOptions options_;
  const v1::DType wire_;
  const ViTConfig config_;
  const torch::Device device_;
  std::unique_ptr<JobMembership> membership_;
  DeviceToHost
      d2h_;  // The trainer's thread only (SubmitLogits).  // Set once, right after construction.

  Mutex assign_mu_;  // Serialises OnAssignment.
  uint64_t applied_version_ ABSL_GUARDED_BY(assign_mu_) = 0;

  Mutex mu_ ABSL_ACQUIRED_AFTER(assign_mu_);
  CondVar wake_;
  std::map<std::string, Endpoint> endpoints_ ABSL_GUARDED_BY(mu_);  // By address.
  std::set<std::string> refused_ ABSL_GUARDED_BY(mu_);              // Wrong model.
  std::map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, uint64_t> retries_ ABSL_GUARDED_BY(mu_);  // Due time -> id.
  absl::Time unrouted_since_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status broken_ ABSL_GUARDED_BY(mu_);  // Set by FailEverything.
  TeacherStats stats_ ABSL_GUARDED_BY(mu_);
  v1::JobTimings job_timings_ ABSL_GUARDED_BY(mu_);  // Sums since the last heartbeat.
  int64_t job_round_trips_ ABSL_GUARDED_BY(mu_) = 0;
  double predicted_step_s_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int> planned_m_{0};
  Thread retrier_;
};

}  // namespace mkd::client

#endif  // MKD_TEACHER_CLIENT_REMOTE_TEACHER_IMPL_H_
