// `mkd status` and `mkd drain`: the operator's view of a teacher pool,
// through mkd-coordinator's ListTeachers / ListJobs / Drain; `mkd health`,
// the standard gRPC health check of one server. Torch-free.
#ifndef MKD_CLI_POOL_H_
#define MKD_CLI_POOL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rpc/pool_auth.h"
#include "rpc/transport_security.h"

namespace mkd::cli {

struct PoolOptions {
  std::string coordinator;  // host:port of mkd-coordinator.
  std::string teacher;      // drain: the teacher's address, as `status` lists it;
                            // health: the server's address.
  absl::Duration timeout = absl::Seconds(5);
  bool json = false;  // status: the coordinator's answers as JSON.
  TlsOptions tls;     // --tls-* or --insecure.
  std::string token;  // --token-file's pool token ("": none).
};

absl::StatusOr<PoolOptions> ParseStatusFlags(const std::vector<std::string>& args);
absl::StatusOr<PoolOptions> ParseDrainFlags(const std::vector<std::string>& args);
std::string StatusUsage();
std::string DrainUsage();
absl::StatusOr<PoolOptions> ParseHealthFlags(const std::vector<std::string>& args);
std::string HealthUsage();

// Two tables: the teachers (address, model, device, state, load, jobs) and
// the jobs (job, model, weight, step, img/s, teachers, m, bubble); with
// --json, {"teachers": ListTeachers, "jobs": ListJobs} for scripts.
// kUnavailable when the coordinator cannot be reached in time.
absl::StatusOr<std::string> RunStatus(const PoolOptions& options);
// Asks the coordinator to drain the teacher; kNotFound if it is unknown.
absl::StatusOr<std::string> RunDrain(const PoolOptions& options);
// grpc.health.v1 Check of any gRPC server (mkd-teacher, mkd-coordinator):
// "host:port: SERVING", or an error (exit 1) when it is not serving (a
// draining teacher says NOT_SERVING) or does not answer in time. For
// Docker HEALTHCHECKs and scripts.
absl::StatusOr<std::string> RunHealth(const PoolOptions& options);

// `mkd token --secret-file FILE --role ROLE --id ID [--ttl 30d]`: a pool
// token (rpc/pool_auth.h) for a teacher, a job or an operator.
struct TokenOptions {
  std::string secret_file, id;
  rpc::Role role = rpc::Role::kJob;
  absl::Duration ttl = absl::Hours(24 * 30);
};
// "30d", "12h", "90m", "3600s" as a duration; errors name `flag`.
absl::StatusOr<absl::Duration> ParseTtl(const std::string& text, absl::string_view flag);

absl::StatusOr<TokenOptions> ParseTokenFlags(const std::vector<std::string>& args);
std::string TokenUsage();
absl::StatusOr<std::string> RunToken(const TokenOptions& options);

// `mkd job-token --secret-file FILE --job ID`: the job's token under the
// teachers' auth.job_secret_file (rpc/job_token.h), for the job's
// distill.job_token_file.
struct JobTokenOptions {
  std::string secret_file, job;
};
absl::StatusOr<JobTokenOptions> ParseJobTokenFlags(const std::vector<std::string>& args);
std::string JobTokenUsage();
absl::StatusOr<std::string> RunJobToken(const JobTokenOptions& options);

}  // namespace mkd::cli

#endif  // MKD_CLI_POOL_H_
