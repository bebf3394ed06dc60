// CoordinatorService over gRPC's callback API. Unary calls validate their
// request (INVALID_ARGUMENT naming the field) and update the Pool;
// WatchAssignment is a server stream per job that receives the job's
// assignment whenever its version changes (only the newest one is sent if
// several changes happen during a write). Handlers never block.
// Thread-safe.
#ifndef MKD_COORDINATOR_SERVICE_H_
#define MKD_COORDINATOR_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/mutex.h"
#include "coordinator/config.h"
#include "coordinator/metrics.h"
#include "coordinator/pool.h"
#include "maskedkd/v1/coordinator.grpc.pb.h"
#include "rpc/pool_auth.h"

namespace mkd::coordinator {

// Field checks shared by the RPCs (kInvalidArgument naming the field).
absl::Status ValidateTeacherInfo(const v1::TeacherInfo& info);
absl::Status ValidateJobInfo(const v1::JobInfo& info);
absl::Status ValidateJobTimings(const v1::JobTimings& timings);
absl::Status ValidateTeacherLoad(const v1::TeacherLoad& load);

class CoordinatorServiceImpl final : public v1::CoordinatorService::CallbackService {
 public:
  // `pool` and `metrics` (may be null) must outlive the service.
  CoordinatorServiceImpl(const CoordinatorConfig& config, Pool* pool, CoordinatorMetrics* metrics);

  grpc::ServerUnaryReactor* RegisterTeacher(grpc::CallbackServerContext* ctx,
                                            const v1::RegisterTeacherRequest* request,
                                            v1::RegisterTeacherResponse* response) override;
  grpc::ServerUnaryReactor* TeacherHeartbeat(grpc::CallbackServerContext* ctx,
                                             const v1::TeacherHeartbeatRequest* request,
                                             v1::TeacherHeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* RegisterJob(grpc::CallbackServerContext* ctx,
                                        const v1::RegisterJobRequest* request,
                                        v1::RegisterJobResponse* response) override;
  grpc::ServerUnaryReactor* JobHeartbeat(grpc::CallbackServerContext* ctx,
                                         const v1::JobHeartbeatRequest* request,
                                         v1::JobHeartbeatResponse* response) override;
  grpc::ServerWriteReactor<v1::Assignment>* WatchAssignment(
      grpc::CallbackServerContext* ctx, const v1::WatchAssignmentRequest* request) override;
  grpc::ServerUnaryReactor* ListTeachers(grpc::CallbackServerContext* ctx,
                                         const v1::ListTeachersRequest* request,
                                         v1::ListTeachersResponse* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest* request,
                                  v1::DrainResponse* response) override;

  // The Pool's change callback: pushes the new assignments to watchers.
  void OnChange(const std::vector<std::string>& jobs);

  // Ends every watch stream (before the server shuts down, which would
  // otherwise wait for them). Later watches are refused UNAVAILABLE.
  void CloseWatches();

 private:
  class Watcher;
  grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx, const absl::Status& status);
  void Forget(Watcher* watcher);

  // OK when the call may act as `role` for `name` (rpc/pool_auth.h);
  // otherwise the refusal, counted by reason.
  absl::Status Authorize(grpc::CallbackServerContext* ctx, rpc::Role role, absl::string_view name);
  // `upsert`, the Pool's answer to a registration or heartbeat; a refusal
  // of a second process for a live member is counted ("instance").
  absl::Status Admitted(const absl::Status& upsert);
  // The caller of a listing: an operator (sees all) or a job (itself only).
  absl::StatusOr<rpc::Principal> AuthorizeListing(grpc::CallbackServerContext* ctx);

  // Constant after construction.
  const CoordinatorConfig config_;
  const rpc::PoolAuthorizer auth_;
  Pool* const pool_;
  CoordinatorMetrics* const metrics_;

  Mutex mu_;
  std::multimap<std::string, Watcher*> watchers_ ABSL_GUARDED_BY(mu_);  // By job.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace mkd::coordinator

#endif  // MKD_COORDINATOR_SERVICE_H_
