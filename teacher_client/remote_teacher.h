// Teachers in other processes (mkd-teacher), reached over gRPC: the same
// Teacher interface as the in-process one, so the training loop does not
// change. Two ways to find them:
//   - one fixed teacher (`address`), as before a pool existed;
//   - a pool (`coordinator`): the job registers with mkd-coordinator,
//     heartbeats its timings, and streams to every teacher the coordinator
//     assigns it, following the assignment as teachers join, drain and die.
//
// Micro-batches go out as kept patches [b, k, C*p*p] in the wire dtype;
// SubmitLogits returns at once, without waiting for the device: the
// patches are cut on the device and copied to host memory on a side
// stream, and each teacher stream's writer encodes them for its data
// plane (gRPC bytes, or shared memory with a teacher on this host). Each goes to the connected
// teacher with the fewest kept tokens outstanding. Failure handling:
//   - an answer UNAVAILABLE, RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED is
//     sent again under the same id (the server computes an id once), after
//     a short backoff, to whichever teacher is then least loaded;
//   - when a stream breaks, or the coordinator takes a teacher away, its
//     unanswered micro-batches move to the other teachers under the same
//     ids (with one fixed teacher: re-sent when it reconnects);
//   - every send counts towards max_attempts; past it the micro-batch fails
//     with the last reason, so a poisoned request cannot loop forever;
//   - with no teacher to send to for reconnect_timeout, waiting
//     micro-batches fail with kUnavailable naming the teachers tried;
//   - a micro-batch larger than a teacher's max_request_bytes is refused
//     (kInvalidArgument) before it is sent.
// A teacher whose ModelInfo names another model than the job asked for is
// refused with a log line and never used.
#ifndef MKD_TEACHER_CLIENT_REMOTE_TEACHER_H_
#define MKD_TEACHER_CLIENT_REMOTE_TEACHER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/dtype.h"
#include "rpc/transport_security.h"
#include "teacher_client/data_plane.h"
#include "teacher_client/teacher.h"

namespace mkd::client {

struct RemoteTeacherOptions {
  std::string address;             // host:port of one mkd-teacher, or
  std::string coordinator;         // host:port of mkd-coordinator (then address is unused).
  std::string job_id = "default";  // Fair-share unit on the teachers, job id in the pool.
  double job_weight = 1;           // The job's share relative to other jobs.
  std::string model_id;            // Required model ("": any; required with a coordinator).
  DType wire_dtype = DType::kF16;  // kF32 | kF16 | kBF16
  absl::Duration timeout = absl::Seconds(60);            // Per micro-batch, server side.
  absl::Duration reconnect_timeout = absl::Seconds(60);  // No teacher this long: fail.
  // With a coordinator: how long to wait for a first teacher of the model.
  absl::Duration teacher_wait = absl::Seconds(600);
  int max_attempts = 5;  // Sends per micro-batch id, all teachers together.
  // The job as the coordinator plans it.
  int batch_size = 1;            // B, images per step (data.batch_size).
  int kept_patches = 1;          // k, patches kept per image.
  int max_teachers = 0;          // 0: no limit.
  int pinned_micro_batches = 0;  // > 0: the job's config fixes m.
  int max_micro_batches = 0;     // Planning bound (0: 16).
  // Data parallelism: this process is rank `rank` of the job's
  // `world_size`; the pool counts the ranks as one job.
  int rank = 0;
  int world_size = 1;
  // For every channel, to the coordinator and to each teacher: mutual TLS,
  // or insecure explicitly.
  TlsOptions tls;
  // Shown to teachers that require one (auth.job_secret_file); "": none.
  std::string job_token;
  // How micro-batches reach each teacher (data_plane.h): auto takes
  // shared memory for a teacher on this host (ModelInfo.host_id), gRPC
  // bytes otherwise.
  DataPlaneKind data_plane = DataPlaneKind::kAuto;
  int64_t shm_region_bytes = 64 << 20;  // Per stream.
  // The device the logits go to: on CUDA they are decoded into pinned
  // memory, so their copy to the device need not wait.
  std::string device = "cpu";
};

// Connects and reads the teacher's ModelInfo: with `address`, waiting up to
// reconnect_timeout; with `coordinator`, registering the job and waiting up
// to teacher_wait for a teacher of `model_id` (saying so once on stderr).
// kUnavailable when none can be reached, kInvalidArgument for bad options,
// kFailedPrecondition when the fixed teacher serves another model.
absl::StatusOr<std::unique_ptr<Teacher>> MakeRemoteTeacher(const RemoteTeacherOptions& options);

}  // namespace mkd::client

#endif  // MKD_TEACHER_CLIENT_REMOTE_TEACHER_H_
