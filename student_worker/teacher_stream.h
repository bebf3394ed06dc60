// One student's connection to one mkd-teacher: a Distill stream kept open
// (reopened with backoff when it breaks), a writer thread that sends queued
// micro-batches and a reader thread that hands answers back. Callers never
// block on the network: Send queues, and a stalled server holds up neither
// the caller, nor the reader, nor the destructor (which cancels the call).
//
// The stream knows nothing of retries or other teachers (RemoteTeacher
// does): when the stream breaks, what was sent on it is the owner's to
// re-send, told through on_broken; on_connected says a stream is open
// (again) and on_answer carries each answer.
//
// Thread-safe. Callbacks run on the reader thread, one at a time (but
// on_written, on the writer thread), without any lock of this class held;
// they may call Send.
#ifndef MKD_STUDENT_WORKER_TEACHER_STREAM_H_
#define MKD_STUDENT_WORKER_TEACHER_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "common/mutex.h"
#include "maskedkd/v1/teacher.grpc.pb.h"

namespace mkd::student {

using SharedRequest = std::shared_ptr<const maskedkd::v1::DistillRequest>;

struct TeacherStreamCallbacks {
  std::function<void()> on_connected;
  std::function<void(const maskedkd::v1::DistillResponse&)> on_answer;
  std::function<void(const absl::Status&)> on_broken;
  // A request's write returned (it is in gRPC's hands); on the writer
  // thread. Optional.
  std::function<void(uint64_t micro_batch_id)> on_written;
};

class TeacherStream {
 public:
  // `channel` is shared with the owner (who reads ModelInfo over it).
  // `job_token` ("": none) goes with every call, as x-mkd-job-token.
  // Nothing happens until Start.
  TeacherStream(std::string address, std::shared_ptr<grpc::Channel> channel,
                TeacherStreamCallbacks callbacks, std::string job_token = "");
  // Starts connecting; callbacks may run from now on (so the owner calls
  // this once it can take them). Call once.
  void Start();
  ~TeacherStream();  // Cancels the call and joins both threads.

  const std::string& address() const { return address_; }

  // Queues `request` for the current stream. Dropped silently when no
  // stream is open or it breaks before the write: the owner re-sends what
  // on_broken/on_connected tell it to.
  void Send(SharedRequest request);

  bool connected();

 private:
  struct Call;  // One stream: its context, its writer side, in-flight writes.
  void ReadLoop();
  void WriteLoop();

  // Constant after construction.
  const std::string address_;
  const std::string job_token_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<maskedkd::v1::TeacherService::Stub> stub_;
  const TeacherStreamCallbacks callbacks_;

  Mutex mu_;
  CondVar wake_;
  std::shared_ptr<Call> call_ ABSL_GUARDED_BY(mu_);        // The open stream, if any.
  std::deque<SharedRequest> outbox_ ABSL_GUARDED_BY(mu_);  // For call_.
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reader_;
  std::thread writer_;
};

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_TEACHER_STREAM_H_
