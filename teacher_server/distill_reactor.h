// One Distill stream on the server: reads micro-batches one at a time, in
// order, hands each to the service, and writes answers one at a time in
// completion order. Holds its client's and its job's share of the limits
// (stream_limits.h) while open.
//
// Lifetime: deletes itself once gRPC is done with it (OnDone) *and* every
// accepted micro-batch has been answered (the batcher may answer after the
// client has gone) *and* no idle sweep holds it.
#ifndef MKD_TEACHER_SERVER_DISTILL_REACTOR_H_
#define MKD_TEACHER_SERVER_DISTILL_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "maskedkd/v1/teacher.grpc.pb.h"
#include "rpc/pool_auth.h"
#include "teacher_server/result_cache.h"
#include "teacher_server/shared_region.h"

namespace mkd::teacher {

class TeacherServiceImpl;

// The answer carrying `status` for micro-batch `id`.
Answer ErrorAnswer(uint64_t id, const absl::Status& status);

class DistillReactor final
    : public grpc::ServerBidiReactor<maskedkd::v1::DistillRequest, maskedkd::v1::DistillResponse> {
 public:
  // `client`: the peer's host (PeerHost). Ends at once, RESOURCE_EXHAUSTED,
  // when the client holds its most streams.
  // `credentials`: what the stream's call showed (token, certificate); the
  // first micro-batch's job must be one they grant
  // (TeacherServiceImpl::AuthorizeJob).
  // `region`: the shared-memory region the client offered and the service
  // opened (proto/shared_memory.h), or null; its requests may name ranges
  // of it, and it is closed when the stream and its answers are done.
  DistillReactor(TeacherServiceImpl* service, std::string client, rpc::CallCredentials credentials,
                 std::shared_ptr<SharedRegion> region);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

  // For the service's idle sweep: if the stream has nothing in flight and
  // has received nothing since `cutoff`, holds it (it cannot be deleted)
  // and returns true; the sweep then calls EndIfIdle and Unhold.
  bool HoldIfIdle(absl::Time cutoff) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the stream, DEADLINE_EXCEEDED, if it is still idle since `cutoff`
  // (counted in the limit metrics). Returns whether it did.
  bool EndIfIdle(absl::Time cutoff, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  void Unhold() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void OnAnswer(Answer answer) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the stream once the client sent everything and heard every
  // answer. Releases mu_ either way.
  void MaybeFinish() ABSL_UNLOCK_FUNCTION(mu_);
  // Releases mu_, and deletes this when nothing refers to it any more.
  void UnlockMaybeDelete() ABSL_UNLOCK_FUNCTION(mu_);
  bool Idle(absl::Time cutoff) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  TeacherServiceImpl* const service_;
  const std::string client_;
  const rpc::CallCredentials credentials_;
  const std::shared_ptr<SharedRegion> region_;
  bool opened_ = false;  // Counted in the client's streams (set once, in the constructor).
  maskedkd::v1::DistillRequest request_;  // Owned by the read in progress.

  Mutex mu_;
  std::string job_ ABSL_GUARDED_BY(mu_);  // The job of the first micro-batch; "" until then.
  std::deque<Answer> writes_ ABSL_GUARDED_BY(mu_);  // Front is being written.
  // Read, not yet handed to the service; one OnReadDone at a time drains it.
  struct Received {
    maskedkd::v1::DistillRequest request;
    absl::Status refused;   // Answered with this instead of handled.
    bool admitted = false;  // Holds an in-flight slot of its job.
  };
  std::deque<Received> handoff_ ABSL_GUARDED_BY(mu_);
  bool handing_ ABSL_GUARDED_BY(mu_) = false;
  int64_t unanswered_ ABSL_GUARDED_BY(mu_) = 0;
  int holds_ ABSL_GUARDED_BY(mu_) = 0;  // Idle sweeps (and the handoff loop) holding this.
  absl::Time last_read_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);  // What MaybeFinish ends with.
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_DISTILL_REACTOR_H_
