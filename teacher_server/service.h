// TeacherService over gRPC's callback API: GetModelInfo, and Distill, a
// bidirectional stream of micro-batches answered in completion order.
// A bad micro-batch gets its own INVALID_ARGUMENT answer; the stream and
// the server carry on. Handlers never block: work goes to the Batcher.
// Thread-safe.
#ifndef MKD_TEACHER_SERVER_SERVICE_H_
#define MKD_TEACHER_SERVER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <optional>
#include <set>

#include "maskedkd/v1/teacher.grpc.pb.h"
#include "rpc/pool_auth.h"
#include "teacher_server/batcher.h"
#include "teacher_server/engine.h"
#include "teacher_server/metrics.h"
#include "teacher_server/result_cache.h"
#include "teacher_server/server_config.h"
#include "teacher_server/shared_region.h"
#include "teacher_server/stream_limits.h"
#include "teacher_server/validation.h"

namespace mkd::teacher {

class DistillReactor;

class TeacherServiceImpl final : public maskedkd::v1::TeacherService::CallbackService {
 public:
  // The clock the idle sweep reads (streams' last reads and the cutoff).
  using Clock = std::function<absl::Time()>;

  // Pointers must outlive the service. With no `clock`, absl::Now, and a
  // sweeper thread ends idle streams. A test that passes its own clock
  // sweeps itself (SweepIdleStreams, after moving the clock): no thread
  // then, so no stream ends but when the test says.
  TeacherServiceImpl(const TeacherServerConfig& config, Engine* engine, Batcher* batcher,
                     TeacherMetrics* metrics, Clock clock = nullptr);
  ~TeacherServiceImpl() override;

  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const maskedkd::v1::ModelInfoRequest* request,
                                         maskedkd::v1::ModelInfo* info) override;
  grpc::ServerBidiReactor<maskedkd::v1::DistillRequest, maskedkd::v1::DistillResponse>* Distill(
      grpc::CallbackServerContext* context) override;

  // One micro-batch, from any stream: validate, deduplicate, decode, queue.
  // `answer` is called exactly once (maybe inline, maybe on the batcher's
  // thread) with the response for `request`. `region`: the stream's
  // shared-memory region (null: none), where the request's payload_shm
  // and logits_shm ranges are.
  void Handle(const maskedkd::v1::DistillRequest& request, std::shared_ptr<SharedRegion> region,
              AnswerFn answer);

  const maskedkd::v1::ModelInfo& info() const { return info_; }
  StreamLimits& stream_limits() { return stream_limits_; }
  TeacherMetrics* metrics() { return metrics_; }  // May be null.
  absl::Time Now() const { return clock_(); }

  // One pass of the idle sweep: ends every stream with nothing in flight
  // and no read since limits.idle_stream_timeout_s before Now(). The
  // sweeper thread runs it a few times per timeout; tests with their own
  // clock call it after moving the clock.
  void SweepIdleStreams() ABSL_LOCKS_EXCLUDED(streams_mu_);

  // Whether what a stream showed lets it carry `job` (the job's token or
  // certificate; rpc/pool_auth.h): OK under auth.insecure; otherwise
  // UNAUTHENTICATED or PERMISSION_DENIED, with messages that say nothing of
  // the secret or of other jobs, counted by reason.
  absl::Status AuthorizeJob(const std::string& job, const rpc::CallCredentials& credentials);

  // Streams with micro-batches in flight (a DistillReactor adds itself
  // when its first is read and leaves when its last is answered), for the
  // batcher's queue delay.
  void AddActiveStreams(int delta) ABSL_LOCKS_EXCLUDED(active_mu_);

  // Open streams, for the idle sweep (DistillReactor registers itself).
  void Register(DistillReactor* stream) ABSL_LOCKS_EXCLUDED(streams_mu_);
  void Unregister(DistillReactor* stream) ABSL_LOCKS_EXCLUDED(streams_mu_);

 private:
  // The request's payload_shm as a host tensor of the wire dtype: a view
  // of the region where it is page-locked (the device copies it by DMA),
  // else a copy. The caller checks region->Intact() after reading a view.
  absl::Status ReadRegion(const maskedkd::v1::DistillRequest& request,
                          const std::shared_ptr<SharedRegion>& region,
                          torch::Tensor* patches) const;
  // `payload`: the request's payload bytes from shared memory, as a host
  // tensor of the wire dtype (ReadRegion; undefined: in the message).
  absl::StatusOr<WorkItem> Decode(const maskedkd::v1::DistillRequest& request,
                                  torch::Tensor payload) const;
  // The stream's offer of a shared-memory region (client metadata), opened;
  // null with `*why` when there is none or it cannot be used.
  std::shared_ptr<SharedRegion> OpenOfferedRegion(const grpc::CallbackServerContext& context,
                                                  std::string* why) const;
  // `decode_seconds`: what validating and decoding the request took.
  void Finish(const std::string& job, uint64_t id, const absl::Status& status, WorkResult* result,
              double decode_seconds);
  // SweepIdleStreams a few times per timeout, until the service stops.
  void SweepLoop() ABSL_LOCKS_EXCLUDED(streams_mu_);

  // Constant after construction.
  Engine* const engine_;
  Batcher* const batcher_;
  TeacherMetrics* const metrics_;
  RequestLimits limits_;
  maskedkd::v1::ModelInfo info_;
  const rpc::PoolAuthorizer auth_;
  const Clock clock_;

  const absl::Duration idle_timeout_;   // Zero: streams never time out.
  const int64_t max_shm_region_bytes_;  // Zero: no shared-memory plane.

  ResultCache cache_;
  StreamLimits stream_limits_;

  Mutex active_mu_ ABSL_ACQUIRED_BEFORE(streams_mu_);
  int64_t active_streams_ ABSL_GUARDED_BY(active_mu_) = 0;

  Mutex streams_mu_;
  CondVar sweep_wake_;
  std::set<DistillReactor*> streams_ ABSL_GUARDED_BY(streams_mu_);
  bool stopping_ ABSL_GUARDED_BY(streams_mu_) = false;
  Thread sweeper_;
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_SERVICE_H_
