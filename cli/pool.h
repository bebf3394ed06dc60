// `mkd status` and `mkd drain`: the operator's view of a teacher pool,
// through mkd-coordinator's ListTeachers / ListJobs / Drain. Torch-free.
#ifndef MKD_CLI_POOL_H_
#define MKD_CLI_POOL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mkd::cli {

struct PoolOptions {
  std::string coordinator;  // host:port of mkd-coordinator.
  std::string teacher;      // drain: the teacher's address, as `status` lists it.
  absl::Duration timeout = absl::Seconds(5);
  bool json = false;        // status: the coordinator's answers as JSON.
};

absl::StatusOr<PoolOptions> ParseStatusFlags(const std::vector<std::string>& args);
absl::StatusOr<PoolOptions> ParseDrainFlags(const std::vector<std::string>& args);
std::string StatusUsage();
std::string DrainUsage();

// Two tables: the teachers (address, model, device, state, load, jobs) and
// the jobs (job, model, weight, step, img/s, teachers, m, bubble); with
// --json, {"teachers": ListTeachers, "jobs": ListJobs} for scripts.
// kUnavailable when the coordinator cannot be reached in time.
absl::StatusOr<std::string> RunStatus(const PoolOptions& options);
// Asks the coordinator to drain the teacher; kNotFound if it is unknown.
absl::StatusOr<std::string> RunDrain(const PoolOptions& options);

}  // namespace mkd::cli

#endif  // MKD_CLI_POOL_H_
