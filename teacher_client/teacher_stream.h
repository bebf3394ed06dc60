// One student's connection to one mkd-teacher: a Distill stream kept open
// (reopened with backoff when it breaks), a writer thread that encodes and
// sends queued micro-batches and a reader thread that hands answers back.
// Callers never block on the network: Send queues, and a stalled server
// holds up neither the caller, nor the reader, nor the destructor (which
// cancels the call).
//
// Each call carries micro-batches on one data plane (data_plane.h): gRPC
// bytes, or a shared-memory region made for the call and offered to the
// teacher when it opens (auto falls back to bytes when the teacher cannot
// map it; shm then fails the call, saying why).
//
// The stream knows nothing of retries or other teachers (RemoteTeacher
// does): when the stream breaks, what was sent on it is the owner's to
// re-send, told through on_broken; on_connected says a stream is open
// (again) and on_answer carries each answer, its logits in the message
// whatever the plane.
//
// Thread-safe. Callbacks run without any lock of this class held and may
// call Send: on_connected, on_answer and on_broken on the reader thread,
// one at a time; on_written on the writer thread.
#ifndef MKD_TEACHER_CLIENT_TEACHER_STREAM_H_
#define MKD_TEACHER_CLIENT_TEACHER_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/mutex.h"
#include "common/thread.h"
#include "maskedkd/v1/teacher.grpc.pb.h"
#include "teacher_client/data_plane.h"

namespace mkd::client {

struct TeacherStreamCallbacks {
  std::function<void()> on_connected;
  std::function<void(const maskedkd::v1::DistillResponse&)> on_answer;
  std::function<void(const absl::Status&)> on_broken;
  // A micro-batch's write returned (it is in gRPC's hands) after
  // `encode_seconds` of encoding for its plane. Optional.
  std::function<void(uint64_t micro_batch_id, double encode_seconds)> on_written;
};

struct TeacherStreamPlane {
  // kGrpc, or kShm (a region per call). With kShm and `fallback`, a
  // teacher that cannot use the region gets bytes (distill.data_plane:
  // auto); without, the call ends with kFailedPrecondition.
  DataPlaneKind kind = DataPlaneKind::kGrpc;
  bool fallback = true;
  int64_t region_bytes = 64 << 20;
  // A student on this GPU: its regions are page-locked for DMA (-1: none).
  int cuda_device = -1;
};

class TeacherStream {
 public:
  // `channel` is shared with the owner (who reads ModelInfo over it).
  // `job_token` ("": none) goes with every call, as x-mkd-job-token.
  // Nothing happens until Start.
  TeacherStream(std::string address, std::shared_ptr<grpc::Channel> channel,
                TeacherStreamCallbacks callbacks, std::string job_token = "",
                TeacherStreamPlane plane = {});
  // Starts connecting; callbacks may run from now on (so the owner calls
  // this once it can take them). Call once.
  void Start();
  ~TeacherStream();  // Cancels the call and joins both threads.

  const std::string& address() const { return address_; }

  // Queues `mb` for the current stream. Dropped silently when no stream is
  // open or it breaks before the write: the owner re-sends what
  // on_broken/on_connected tell it to.
  void Send(SharedMicroBatch mb);

  bool connected();
  // The plane of the open call (kGrpc when none is open).
  DataPlaneKind plane();

 private:
  struct Call;  // One stream: its context, its writer side, its plane.
  void ReadLoop();
  void WriteLoop();
  // A thread of this stream died of a bug: stop both for good and tell the
  // owner through on_broken.
  void Die(const absl::Status& why);
  // Opens a call with its plane; nullptr after reporting why not (through
  // on_broken) or on stop.
  std::shared_ptr<Call> Open();

  // Constant after construction.
  const std::string address_;
  const std::string job_token_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<maskedkd::v1::TeacherService::Stub> stub_;
  const TeacherStreamCallbacks callbacks_;
  const TeacherStreamPlane plane_;

  Mutex mu_;
  CondVar wake_;
  std::shared_ptr<Call> opening_ ABSL_GUARDED_BY(mu_);        // Being opened (to cancel).
  std::shared_ptr<Call> call_ ABSL_GUARDED_BY(mu_);           // The open stream, if any.
  std::deque<SharedMicroBatch> outbox_ ABSL_GUARDED_BY(mu_);  // For call_.
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool said_fallback_ ABSL_GUARDED_BY(mu_) = false;
  Thread reader_;
  Thread writer_;
};

}  // namespace mkd::client

#endif  // MKD_TEACHER_CLIENT_TEACHER_STREAM_H_
