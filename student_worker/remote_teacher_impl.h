// RemoteTeacher's class (see remote_teacher.h for what it does), shared by
// remote_teacher.cc (routing, retries, failover) and
// remote_teacher_pool.cc (channels, ModelInfo checks, the coordinator).
// Internal to student_worker/.
#ifndef MKD_STUDENT_WORKER_REMOTE_TEACHER_IMPL_H_
#define MKD_STUDENT_WORKER_REMOTE_TEACHER_IMPL_H_

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "maskedkd/v1/coordinator.pb.h"
#include "maskedkd/v1/teacher.grpc.pb.h"
#include "student_worker/job_membership.h"
#include "student_worker/remote_teacher.h"
#include "student_worker/teacher_stream.h"

namespace mkd::student {

namespace v1 = ::maskedkd::v1;

// A channel tuned for micro-batches: quick reconnects, large windows and
// messages, keepalive pings so a dead peer is noticed without traffic.
std::shared_ptr<grpc::Channel> MakeTeacherChannel(const std::string& address);
ViTConfig ConfigFromInfo(const v1::ModelInfo& info);

// Thread-safe: the trainer submits, stream readers answer, the retry
// thread re-sends, the membership thread changes the teachers.
class RemoteTeacher final : public Teacher {
 public:
  RemoteTeacher(const RemoteTeacherOptions& options, v1::DType wire, const v1::ModelInfo& info);
  ~RemoteTeacher() override;

  // Starts streaming to `address` (its ModelInfo checked by the caller).
  void AddEndpoint(const std::string& address, std::shared_ptr<grpc::Channel> channel,
                   int64_t max_request_bytes);
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
  absl::StatusOr<torch::Tensor> Saliency(const torch::Tensor&) override;
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
    SharedRequest request;
    std::promise<absl::StatusOr<torch::Tensor>> promise;
    std::string endpoint;  // Where it was last sent; "" while unrouted.
    int64_t tokens = 0;    // b * (k + 1)
    int attempts = 0;      // Sends so far.
    absl::Time sent;
    absl::Status last_error = absl::UnavailableError("no teacher has answered yet");
    bool retry_scheduled = false;
  };
  using Fulfil = std::vector<std::pair<std::promise<absl::StatusOr<torch::Tensor>>, absl::Status>>;

  void OnConnected(const std::string& address);
  void OnAnswer(const std::string& address, const v1::DistillResponse& r);
  void OnBroken(const std::string& address, const absl::Status& why);
  // Sends pending `id` to the least loaded connected teacher, or leaves it
  // unrouted; fails it (into *failed) past max_attempts. Needs mu_.
  void Route(uint64_t id, Fulfil* failed);
  // Moves every micro-batch sent to `address` elsewhere. Needs mu_.
  void Reroute(const std::string& address, bool failover, Fulfil* failed);
  void RetryLoop();
  static void Deliver(Fulfil& failed);

  // Constant after construction.
  const RemoteTeacherOptions options_;
  const v1::DType wire_;
  const ViTConfig config_;
  std::unique_ptr<JobMembership> membership_;  // Set once, right after construction.

  std::mutex assign_mu_;          // Serialises OnAssignment.
  uint64_t applied_version_ = 0;  // Guarded by assign_mu_.

  std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, Endpoint> endpoints_;           // By address; guarded by mu_.
  std::set<std::string> refused_;                       // Wrong model; guarded by mu_.
  std::map<uint64_t, Pending> pending_;                 // Guarded by mu_.
  std::multimap<absl::Time, uint64_t> retries_;         // Due time -> id; guarded by mu_.
  absl::Time unrouted_since_ = absl::InfiniteFuture();  // Guarded by mu_.
  uint64_t next_id_ = 0;                                // Guarded by mu_.
  bool stop_ = false;                                   // Guarded by mu_.
  TeacherStats stats_;                                  // Guarded by mu_.
  v1::JobTimings job_timings_;   // Sums since the last heartbeat; guarded by mu_.
  int64_t job_round_trips_ = 0;  // Guarded by mu_.
  double predicted_step_s_ = 0;  // Guarded by mu_.
  std::atomic<int> planned_m_{0};
  std::thread retrier_;
};

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_REMOTE_TEACHER_IMPL_H_
