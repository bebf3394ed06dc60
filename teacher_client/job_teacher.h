// The remote teacher of a training job, from its config: one mkd-teacher
// (distill.teacher_address) or a pool (distill.coordinator), with the
// job's data plane, wire dtype, timeouts, token, TLS and planning inputs.
// mkd-student hands this to Trainer::Create, which calls it after a
// data-parallel rank has met the others.
#ifndef MKD_TEACHER_CLIENT_JOB_TEACHER_H_
#define MKD_TEACHER_CLIENT_JOB_TEACHER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "student_worker/train_config.h"
#include "teacher_client/teacher.h"

namespace mkd::client {

// Errors name the config key (a token file that cannot be read, a device
// that does not exist) or come from MakeRemoteTeacher (no teacher reached).
absl::StatusOr<std::unique_ptr<Teacher>> MakeJobTeacher(const student::TrainConfig& config);

}  // namespace mkd::client

#endif  // MKD_TEACHER_CLIENT_JOB_TEACHER_H_
