// A teacher in another process (mkd-teacher), reached over gRPC: the same
// Teacher interface as the in-process one, so the training loop does not
// change. Micro-batches go out as kept patches [b, k, C*p*p] in the wire
// dtype on one Distill stream; SubmitLogits returns at once and the answer
// arrives on a reader thread.
//
// Failure handling: a micro-batch answered UNAVAILABLE, RESOURCE_EXHAUSTED
// or DEADLINE_EXCEEDED is sent again under the same id (the server computes
// an id once) up to max_attempts; a broken stream is reopened, with
// backoff, and every unanswered micro-batch is sent again; after
// reconnect_timeout without a connection, waiting micro-batches fail with
// kUnavailable. Other codes fail the micro-batch with the server's reason.
#ifndef MKD_STUDENT_WORKER_REMOTE_TEACHER_H_
#define MKD_STUDENT_WORKER_REMOTE_TEACHER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "student_worker/teacher.h"

namespace mkd::student {

struct RemoteTeacherOptions {
  std::string address;             // host:port of mkd-teacher.
  std::string job_id = "default";  // Fair-share unit on the server.
  std::string wire_dtype = "fp16"; // fp32 | fp16 | bf16
  absl::Duration timeout = absl::Seconds(60);            // Per micro-batch, server side.
  absl::Duration reconnect_timeout = absl::Seconds(60);  // Then give up.
  int max_attempts = 5;            // Sends per micro-batch on retryable codes.
};

// Connects (waiting up to reconnect_timeout) and reads the teacher's
// ModelInfo. kUnavailable if it cannot be reached, kInvalidArgument for bad
// options.
absl::StatusOr<std::unique_ptr<Teacher>> MakeRemoteTeacher(const RemoteTeacherOptions& options);

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_REMOTE_TEACHER_H_
